//! The lesion categories: the eight ISIC 2019 diagnoses plus the "Unknown" abstention.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dermoscopic lesion category.
///
/// The eight diagnostic categories are those of the ISIC 2019 challenge. [`LesionClass::Unknown`]
/// is never a model output: it is the abstention a [`crate::Classifier`] reports when its
/// calibrated confidence is below the model's threshold.
///
/// Serializes as its ISIC code (`"MEL"`); parses from the code or the display name, ignoring case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LesionClass {
    /// Actinic keratosis (AK): precancerous.
    ActinicKeratosis,
    /// Basal cell carcinoma (BCC): cancerous.
    BasalCellCarcinoma,
    /// Benign keratosis (BKL): solar lentigo, seborrhoeic keratosis, lichen planus-like keratosis.
    BenignKeratosis,
    /// Dermatofibroma (DF).
    Dermatofibroma,
    /// Melanoma (MEL): cancerous.
    Melanoma,
    /// Melanocytic nevi (NV).
    MelanocyticNevi,
    /// Squamous cell carcinoma (SCC): cancerous.
    SquamousCellCarcinoma,
    /// Vascular lesion (VASC).
    VascularLesion,
    /// Unknown (UNK): the classifier abstains.
    Unknown,
}

/// How worrying a category is, for the "see a dermatologist" message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malignancy {
    /// Not cancer (nevi, benign keratoses, dermatofibroma, vascular lesions).
    Benign,
    /// May become cancer (actinic keratosis).
    Precancerous,
    /// Cancer (melanoma, basal and squamous cell carcinoma).
    Cancerous,
    /// The abstention: nothing is claimed.
    Undetermined,
}

impl LesionClass {
    /// Every category, the eight diagnoses in ISIC code order, then [`LesionClass::Unknown`].
    pub const ALL: [LesionClass; 9] = [
        Self::ActinicKeratosis,
        Self::BasalCellCarcinoma,
        Self::BenignKeratosis,
        Self::Dermatofibroma,
        Self::Melanoma,
        Self::MelanocyticNevi,
        Self::SquamousCellCarcinoma,
        Self::VascularLesion,
        Self::Unknown,
    ];

    /// The eight categories a model can be trained on (all but `Unknown`).
    pub const DIAGNOSES: [LesionClass; 8] = {
        let mut out = [Self::Unknown; 8];
        let mut i = 0;
        while i < 8 {
            out[i] = Self::ALL[i];
            i += 1;
        }
        out
    };

    /// The ISIC code, e.g. `"MEL"`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::ActinicKeratosis => "AK",
            Self::BasalCellCarcinoma => "BCC",
            Self::BenignKeratosis => "BKL",
            Self::Dermatofibroma => "DF",
            Self::Melanoma => "MEL",
            Self::MelanocyticNevi => "NV",
            Self::SquamousCellCarcinoma => "SCC",
            Self::VascularLesion => "VASC",
            Self::Unknown => "UNK",
        }
    }

    /// The name of this class's probability column in every table the project writes (the
    /// training CLI's CSVs, the bulk scorer's rows), e.g. `"probability_MEL"`.
    pub fn probability_column(self) -> String {
        format!("probability_{}", self.code())
    }

    /// The display name, e.g. `"Melanoma"`; this is the `class_name` of the HTTP API.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ActinicKeratosis => "Actinic keratosis",
            Self::BasalCellCarcinoma => "Basal cell carcinoma",
            Self::BenignKeratosis => "Benign keratosis",
            Self::Dermatofibroma => "Dermatofibroma",
            Self::Melanoma => "Melanoma",
            Self::MelanocyticNevi => "Melanocytic nevi",
            Self::SquamousCellCarcinoma => "Squamous cell carcinoma",
            Self::VascularLesion => "Vascular lesion",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether the class is cancer, may become it, or is benign.
    pub const fn malignancy(self) -> Malignancy {
        match self {
            Self::Melanoma | Self::BasalCellCarcinoma | Self::SquamousCellCarcinoma => {
                Malignancy::Cancerous
            }
            Self::ActinicKeratosis => Malignancy::Precancerous,
            Self::Unknown => Malignancy::Undetermined,
            _ => Malignancy::Benign,
        }
    }

    /// True for melanoma, basal cell carcinoma and squamous cell carcinoma.
    pub const fn is_cancerous(self) -> bool {
        matches!(self.malignancy(), Malignancy::Cancerous)
    }

    /// True for actinic keratosis, which can progress to squamous cell carcinoma.
    pub const fn is_precancerous(self) -> bool {
        matches!(self.malignancy(), Malignancy::Precancerous)
    }

    /// Looks a category up by ISIC code or display name, ignoring ASCII case.
    pub fn from_code_or_name(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(s) || c.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for LesionClass {
    /// Writes the display name; `{:#}` writes the ISIC code instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if f.alternate() {
            self.code()
        } else {
            self.name()
        })
    }
}

/// The error of parsing a [`LesionClass`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lesion class {0:?}: expected an ISIC code (AK, BCC, BKL, DF, MEL, NV, SCC, VASC, UNK) or its name")]
pub struct ParseLesionClassError(pub String);

impl FromStr for LesionClass {
    type Err = ParseLesionClassError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code_or_name(s).ok_or_else(|| ParseLesionClassError(s.to_owned()))
    }
}

impl Serialize for LesionClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for LesionClass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for class in LesionClass::ALL {
            assert_eq!(class.code().parse::<LesionClass>(), Ok(class));
            assert_eq!(class.name().parse::<LesionClass>(), Ok(class));
            assert_eq!(
                class.name().to_uppercase().parse::<LesionClass>(),
                Ok(class)
            );
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.code()));
            assert_eq!(serde_json::from_str::<LesionClass>(&json).unwrap(), class);
        }
        assert!("melanomaa".parse::<LesionClass>().is_err());
        assert!(serde_json::from_str::<LesionClass>("\"XYZ\"").is_err());
    }

    #[test]
    fn display_names_are_exact() {
        let shown: Vec<String> = LesionClass::ALL
            .iter()
            .map(|c| format!("{c} ({c:#})"))
            .collect();
        assert_eq!(
            shown,
            [
                "Actinic keratosis (AK)",
                "Basal cell carcinoma (BCC)",
                "Benign keratosis (BKL)",
                "Dermatofibroma (DF)",
                "Melanoma (MEL)",
                "Melanocytic nevi (NV)",
                "Squamous cell carcinoma (SCC)",
                "Vascular lesion (VASC)",
                "Unknown (UNK)",
            ]
        );
    }

    #[test]
    fn malignancy_flags() {
        let cancerous: Vec<_> = LesionClass::ALL
            .into_iter()
            .filter(|c| c.is_cancerous())
            .map(LesionClass::code)
            .collect();
        assert_eq!(cancerous, ["BCC", "MEL", "SCC"]);
        assert!(LesionClass::ActinicKeratosis.is_precancerous());
        assert!(!LesionClass::ActinicKeratosis.is_cancerous());
        assert_eq!(LesionClass::Unknown.malignancy(), Malignancy::Undetermined);
        assert!(!LesionClass::DIAGNOSES.contains(&LesionClass::Unknown));
    }
}
