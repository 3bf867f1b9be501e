//! DICOM through the C API: a wrapped HAM JPEG answers exactly as the JPEG, `dicom` holds what
//! the file says (never who), and a refusal is its own status.

use std::ffi::{CStr, CString};

use skinlesion::*;
use skinlesion_core::testing::{dicom_fixtures, shipped_model};

fn text(field: &[std::ffi::c_char]) -> &str {
    // SAFETY: the library NUL-terminates every field.
    unsafe { CStr::from_ptr(field.as_ptr()) }.to_str().unwrap()
}

fn classify(
    classifier: *const skinlesion_classifier,
    data: &[u8],
) -> (skinlesion_status, skinlesion_prediction) {
    let mut out = std::mem::MaybeUninit::<skinlesion_prediction>::zeroed();
    // SAFETY: a live classifier, a readable buffer and a writable prediction.
    let status = unsafe {
        skinlesion_classify_encoded(classifier, data.as_ptr(), data.len(), out.as_mut_ptr())
    };
    // SAFETY: zeroed is a valid prediction (false, 0 and empty strings).
    (status, unsafe { out.assume_init() })
}

#[test]
fn dicom_in_c() {
    let fixtures = dicom_fixtures();
    let path = CString::new(shipped_model().to_str().unwrap()).unwrap();
    let mut classifier = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, default options, a writable handle slot.
    let status =
        unsafe { skinlesion_classifier_new(path.as_ptr(), std::ptr::null(), &mut classifier) };
    assert_eq!(status, skinlesion_status::Ok);
    let jpeg = std::fs::read(&fixtures.jpegs[0]).unwrap();
    let wrapped = std::fs::read(fixtures.path("ham-0.dcm")).unwrap();
    let (status, from_jpeg) = classify(classifier, &jpeg);
    assert_eq!(status, skinlesion_status::Ok);
    let (status, from_dicom) = classify(classifier, &wrapped);
    assert_eq!(status, skinlesion_status::Ok);
    assert_eq!(from_dicom.probabilities, from_jpeg.probabilities);
    assert_eq!(from_dicom.lesion_class, from_jpeg.lesion_class);
    assert!(!from_jpeg.dicom.is_dicom && text(&from_jpeg.dicom.modality).is_empty());
    let d = &from_dicom.dicom;
    assert!(d.is_dicom);
    assert_eq!(text(&d.sop_class_uid), "1.2.840.10008.5.1.4.1.1.77.1.7");
    assert_eq!(text(&d.sop_class), "Dermoscopic Photography Image Storage");
    assert_eq!(
        (text(&d.modality), text(&d.body_site)),
        ("DMS", "Upper arm")
    );
    assert_eq!(
        (
            text(&d.laterality),
            text(&d.patient_age),
            text(&d.patient_sex)
        ),
        ("L", "045Y", "F")
    );
    let (status, _) = classify(
        classifier,
        &std::fs::read(fixtures.path("mr-16bit.dcm")).unwrap(),
    );
    assert_eq!(status, skinlesion_status::NotColourPhotograph);
    let (status, _) = classify(
        classifier,
        &std::fs::read(fixtures.path("jpeg-ls.dcm")).unwrap(),
    );
    assert_eq!(status, skinlesion_status::UnsupportedTransferSyntax);
    // SAFETY: the handle from skinlesion_classifier_new, freed once.
    unsafe { skinlesion_classifier_free(classifier) };
}
