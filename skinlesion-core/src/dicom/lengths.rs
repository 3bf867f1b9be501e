//! Declared lengths checked against the bytes there are, before the DICOM parser sees them.
//!
//! dicom-parser 0.10.1 allocates and zero-fills an element's declared length before reading
//! it, so a 3 KB file whose element claims 4 GB costs 4 GB (found by fuzzing). This walk reads
//! only element headers (tag, VR, length), steps into sequences and items, skips every other
//! value, and refuses a length that runs past the end of the input.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::error::{Error, Result};

/// Undefined length: a sequence, item or encapsulated pixel data closed by a delimiter.
const UNDEFINED: u32 = u32::MAX;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const TRANSFER_SYNTAX: Tag = Tag(0x0002, 0x0010);

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    ExplicitLittle,
    ImplicitLittle,
    ExplicitBig,
}

struct Header {
    tag: Tag,
    vr: Option<VR>,
    length: u32,
    /// Where the value starts.
    value: usize,
}

/// Walks a file from its `DICM` marker on; an error names the element whose length does not
/// fit. A header cut short ends the walk quietly: the parser reports that itself.
pub(super) fn check(from_marker: &[u8]) -> Result<()> {
    let mut at = 4; // after "DICM"
    let mut transfer_syntax = String::new();
    // The file meta group is explicit VR little endian whatever the data set uses.
    while let Some(h) = header(from_marker, at, Encoding::ExplicitLittle) {
        if h.tag.group() != 0x0002 {
            break;
        }
        let value = fits(from_marker, &h)?;
        if h.tag == TRANSFER_SYNTAX {
            transfer_syntax = String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .into();
        }
        at = h.value + value.len();
    }
    let encoding = match transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => Encoding::ImplicitLittle,
        "1.2.840.10008.1.2.2" => Encoding::ExplicitBig,
        _ => Encoding::ExplicitLittle,
    };
    walk(from_marker, at, encoding)
}

fn walk(bytes: &[u8], mut at: usize, encoding: Encoding) -> Result<()> {
    // Inside encapsulated pixel data, items are fragments of encoded pixels, not data sets.
    let mut in_fragments = false;
    while let Some(h) = header(bytes, at, encoding) {
        let container = !in_fragments && (h.tag == ITEM || is_sequence(&h, encoding));
        at = match h.length {
            UNDEFINED if h.tag == PIXEL_DATA => {
                in_fragments = true;
                h.value
            }
            UNDEFINED => h.value,
            _ if container => {
                fits(bytes, &h)?;
                h.value
            }
            _ => h.value + fits(bytes, &h)?.len(),
        };
        if h.tag == SEQUENCE_END {
            in_fragments = false;
        }
    }
    Ok(())
}

/// The value of `h`, when its length fits in what is left.
fn fits<'a>(bytes: &'a [u8], h: &Header) -> Result<&'a [u8]> {
    let end = h.value.checked_add(h.length as usize);
    end.and_then(|end| bytes.get(h.value..end)).ok_or_else(|| {
        Error::Decode(format!(
            "DICOM element ({:04X},{:04X}) declares {} bytes, only {} remain",
            h.tag.group(),
            h.tag.element(),
            h.length,
            bytes.len().saturating_sub(h.value)
        ))
    })
}

fn is_sequence(h: &Header, encoding: Encoding) -> bool {
    match (h.vr, encoding) {
        (Some(vr), _) => vr == VR::SQ,
        (None, _) => StandardDataDictionary
            .by_tag(h.tag)
            .is_some_and(|entry| entry.vr() == VirtualVr::Exact(VR::SQ)),
    }
}

/// The element header at `at`; `None` when the input ends inside it.
fn header(bytes: &[u8], at: usize, encoding: Encoding) -> Option<Header> {
    let big = encoding == Encoding::ExplicitBig;
    let u16_at = |i: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(i..i + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(i..i + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let tag = Tag(u16_at(at)?, u16_at(at + 2)?);
    // Items and delimiters have no VR in any encoding; implicit VR has none at all.
    if tag.group() == 0xFFFE || encoding == Encoding::ImplicitLittle {
        let length = u32_at(at + 4)?;
        return Some(Header {
            tag,
            vr: None,
            length,
            value: at + 8,
        });
    }
    let vr = VR::from_binary(bytes.get(at + 4..at + 6)?.try_into().ok()?);
    let long = vr.is_none_or(|vr| {
        use VR::*;
        matches!(
            vr,
            OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
        )
    });
    if long {
        let length = u32_at(at + 8)?;
        Some(Header {
            tag,
            vr,
            length,
            value: at + 12,
        })
    } else {
        let length = u32::from(u16_at(at + 6)?);
        Some(Header {
            tag,
            vr,
            length,
            value: at + 8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "DICM", a file meta group naming `transfer_syntax`, then `data_set`.
    fn file(transfer_syntax: &str, data_set: &[u8]) -> Vec<u8> {
        let mut uid = transfer_syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut out = b"DICM".to_vec();
        out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        out.extend_from_slice(&uid);
        out.extend_from_slice(data_set);
        out
    }

    /// An explicit-VR little-endian OB element of (0009,0010) declaring `length`.
    fn ob(length: u32, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0];
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_length_past_the_end_is_refused_by_element() {
        let explicit = "1.2.840.10008.1.2.1";
        assert!(check(&file(explicit, &ob(4, b"abcd"))).is_ok());
        let e = check(&file(explicit, &ob(0xFFFF_FFF0, b"abcd"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("(0009,0010) declares 4294967280 bytes, only 4"),
            "{e}"
        );
        // Inside a sequence of undefined length, inside an item.
        let mut nested = vec![0x08, 0x00, 0x18, 0x22, b'S', b'Q', 0, 0];
        nested.extend_from_slice(&UNDEFINED.to_le_bytes());
        nested.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        nested.extend_from_slice(&UNDEFINED.to_le_bytes());
        nested.extend(ob(1 << 30, b""));
        assert!(check(&file(explicit, &nested)).is_err());
        // Implicit VR: four-byte lengths without a VR.
        let mut implicit = vec![0x10, 0x00, 0x10, 0x00];
        implicit.extend_from_slice(&(1u32 << 31).to_le_bytes());
        assert!(check(&file("1.2.840.10008.1.2", &implicit)).is_err());
    }

    #[test]
    fn fragments_of_encapsulated_pixels_are_skipped_not_parsed() {
        let mut pixels = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        pixels.extend_from_slice(&UNDEFINED.to_le_bytes());
        for fragment in [&b""[..], &[0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0xFF][..]] {
            pixels.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            pixels.extend_from_slice(&(fragment.len() as u32).to_le_bytes());
            pixels.extend_from_slice(fragment);
        }
        pixels.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(check(&file("1.2.840.10008.1.2.4.50", &pixels)).is_ok());
    }
}
