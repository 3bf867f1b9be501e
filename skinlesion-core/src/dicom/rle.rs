//! DICOM RLE Lossless (PS3.5 Annex G) for 8-bit samples, decoded here rather than by
//! dicom-transfer-syntax-registry 0.10.1, which indexes past its buffers (and allocates what a
//! segment count claims) on malformed fragments (found by fuzzing).

use crate::error::{Error, Result};

/// The transfer syntax UID of RLE Lossless.
pub(super) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// One frame's fragment to `samples` planes of `pixels` bytes each, one after another.
pub(super) fn decode(fragment: &[u8], samples: usize, pixels: usize) -> Result<Vec<u8>> {
    let word = |i: usize| -> Option<usize> {
        let b: [u8; 4] = fragment.get(4 * i..4 * i + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let segments = word(0).ok_or_else(|| bad("the fragment has no RLE header"))?;
    if segments != samples {
        return Err(bad(&format!(
            "{segments} RLE segments for {samples} samples per pixel"
        )));
    }
    let mut out = Vec::with_capacity(samples * pixels);
    for s in 0..segments {
        let start = word(1 + s).ok_or_else(|| bad("the RLE header is cut short"))?;
        let end = match s + 1 {
            next if next < segments => word(1 + next).unwrap_or(fragment.len()),
            _ => fragment.len(),
        };
        let segment = fragment
            .get(start..end)
            .ok_or_else(|| bad("an RLE segment lies outside the fragment"))?;
        unpack(segment, pixels, &mut out)?;
    }
    Ok(out)
}

/// PackBits: a byte n ≥ 0 copies the next n + 1 bytes, n in −127..−1 repeats the next byte
/// 1 − n times, −128 does nothing. Stops at `pixels` bytes (a segment may be padded).
fn unpack(segment: &[u8], pixels: usize, out: &mut Vec<u8>) -> Result<()> {
    let target = out.len() + pixels;
    let mut i = 0;
    while out.len() < target {
        let Some(&control) = segment.get(i) else {
            return Err(bad(
                "an RLE segment decodes to fewer pixels than the image has",
            ));
        };
        let n = control as i8;
        i += 1;
        match n {
            0..=127 => {
                let run = segment
                    .get(i..i + n as usize + 1)
                    .ok_or_else(|| bad("an RLE literal run is cut short"))?;
                out.extend_from_slice(run);
                i += run.len();
            }
            -127..=-1 => {
                let byte = *segment
                    .get(i)
                    .ok_or_else(|| bad("an RLE repeat is cut short"))?;
                out.extend(std::iter::repeat_n(byte, (1 - i32::from(n)) as usize));
                i += 1;
            }
            -128 => {}
        }
    }
    out.truncate(target);
    Ok(())
}

fn bad(why: &str) -> Error {
    Error::Decode(format!("DICOM RLE pixel data: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut body = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            let offset = (64 + body.len()) as u32;
            header[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(s);
        }
        [header, body].concat()
    }

    #[test]
    fn packbits_runs_and_literals_decode_per_plane() {
        // Plane 1: a literal 1 2 3 then four 9s; plane 2: seven 5s, padded.
        let f = fragment(&[&[2, 1, 2, 3, 0xFD, 9], &[0xFA, 5, 0x80, 0]]);
        assert_eq!(
            decode(&f, 2, 7).unwrap(),
            [1, 2, 3, 9, 9, 9, 9, 5, 5, 5, 5, 5, 5, 5]
        );
    }

    #[test]
    fn malformed_fragments_are_errors_not_panics() {
        let good = fragment(&[&[0xFA, 5]]);
        assert!(decode(&good, 1, 7).is_ok());
        for (fragment, samples, pixels) in [
            (vec![], 1, 7),
            (vec![1, 0, 0], 1, 7),
            (good.clone(), 3, 7),
            (good.clone(), 1, 8),
            (fragment(&[&[5, 1, 2]]), 1, 6),
            (fragment(&[&[0xFA]]), 1, 7),
            ([&(u32::MAX).to_le_bytes()[..], &[0; 60]].concat(), 1, 1),
        ] {
            assert!(decode(&fragment, samples, pixels).is_err());
        }
        let mut outside = good.clone();
        outside[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&outside, 1, 7).is_err());
    }
}
