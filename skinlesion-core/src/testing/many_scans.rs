//! A valid progressive JPEG with as many scans as the format allows, written by hand: the
//! hostile input a scan limit is for (small file, thousands of scans of work).

/// A flat mid-grey `width`×`height` progressive JPEG (three components, no subsampling) whose
/// progression is the longest the format allows, cut at `max_scans` scans: one DC scan, then
/// per component and per AC coefficient a first scan at successive approximation 13 and 13
/// refinement scans (up to 1 + 3 × 63 × 14 = 2647). Every scan is valid: the coefficients are
/// all zero, so each AC scan is a few end-of-band runs, and the file stays small (about 10
/// bytes a scan plus 3 bits a block for DC).
pub fn many_scan_jpeg(width: u16, height: u16, max_scans: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    // One quantisation table of ones.
    segment(&mut out, 0xDB, &[[0u8].as_slice(), &[1; 64]].concat());
    // SOF2: progressive, 8-bit, three components sampled 1×1 on table 0.
    let [h1, h0] = height.to_be_bytes();
    let [w1, w0] = width.to_be_bytes();
    let frame = [8, h1, h0, w1, w0, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0];
    segment(&mut out, 0xC2, &frame);
    // DC table 0: one code, "0", for difference category 0; AC table 0: one code, "0", for
    // EOB14 (an end-of-band run of 16384-32767 blocks).
    segment(&mut out, 0xC4, &huffman_table(0x00, 0x00));
    segment(&mut out, 0xC4, &huffman_table(0x10, 0xE0));
    let blocks = usize::from(width).div_ceil(8) * usize::from(height).div_ceil(8);

    // The DC scan, all components interleaved: each block's difference is 0, one bit.
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0x00]);
    let mut bits = BitWriter::default();
    (0..blocks * 3).for_each(|_| bits.put(0, 1));
    out.extend(bits.finish());

    let mut scans = 1;
    'all: for component in 1..=3u8 {
        for k in 1..=63u8 {
            for ah in (0..=13u8).map(|a| if a == 0 { 0 } else { 14 - a }) {
                if scans == max_scans {
                    break 'all;
                }
                // First scan (Ah 0, Al 13), then refinements Ah → Al = Ah - 1.
                let al = if ah == 0 { 13 } else { ah - 1 };
                segment(&mut out, 0xDA, &[1, component, 0x00, k, k, (ah << 4) | al]);
                out.extend(eob_runs(blocks));
                scans += 1;
            }
        }
    }
    out.extend([0xFF, 0xD9]);
    out
}

/// A marker segment: FF `marker`, its length, `payload`.
fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
}

/// A DHT payload with one code of length 1 for `symbol`.
fn huffman_table(class_and_id: u8, symbol: u8) -> Vec<u8> {
    let mut t = vec![class_and_id, 1];
    t.extend([0; 15]);
    t.push(symbol);
    t
}

/// `blocks` blocks of zeros as end-of-band runs of at most 32767 (EOB14: code "0", then the
/// run's 14 low bits). A remainder under 16384 is folded into the runs before it.
fn eob_runs(blocks: usize) -> Vec<u8> {
    assert!(
        blocks >= 16384,
        "the writer only speaks EOB14: at least 16384 blocks"
    );
    let n = blocks.div_ceil(32767);
    let mut bits = BitWriter::default();
    for i in 0..n {
        let run = blocks / n + usize::from(i < blocks % n);
        bits.put(0, 1);
        bits.put((run - 16384) as u32, 14);
    }
    bits.finish()
}

/// Entropy-coded bits, most significant first, 0xFF bytes stuffed, padded with ones.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u32,
    len: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u32) {
        for b in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((value >> b) & 1);
            self.len += 1;
            if self.len == 8 {
                self.push();
            }
        }
    }

    fn push(&mut self) {
        let byte = self.acc as u8;
        self.bytes.push(byte);
        if byte == 0xFF {
            self.bytes.push(0x00);
        }
        (self.acc, self.len) = (0, 0);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            let pad = 8 - self.len;
            self.acc = (self.acc << pad) | ((1 << pad) - 1);
            self.len = 8;
            self.push();
        }
        self.bytes
    }
}
