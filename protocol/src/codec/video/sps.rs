//! Reads the picture size out of the sequence parameter sets of an H.264 Annex-B stream, so the
//! appliance refuses a hostile SPS before the decoder allocates for whatever size it declares.

/// Size in macroblocks declared by each SPS in `data`; `Err(())` if an SPS cannot be parsed.
pub(super) fn sps_sizes_in_mbs(data: &[u8]) -> Result<Vec<(u32, u32)>, ()> {
    let mut sizes = Vec::new();
    for nal in nal_units(data) {
        if nal.first().map(|h| h & 0x1f) == Some(7) {
            let rbsp = unescape(&nal[1..]);
            sizes.push(parse_sps(&mut Bits::new(&rbsp)).ok_or(())?);
        }
    }
    Ok(sizes)
}

/// NAL units between Annex-B start codes (`00 00 01`, optionally with a leading zero byte).
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| s - 3)
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(s, e)| &data[s..e.max(s)])
}

/// Drops the emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// Exp-Golomb ue(v), at most 32 bits of value.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let v = self.ue()?;
        Some(if v % 2 == 1 {
            v.div_ceil(2) as i32
        } else {
            -((v / 2) as i32)
        })
    }
}

/// H.264 7.3.2.1.1, up to the picture size.
fn parse_sps(b: &mut Bits) -> Option<(u32, u32)> {
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, level
    b.ue()?; // seq_parameter_set_id
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        let chroma_format = b.ue()?;
        if chroma_format == 3 {
            b.bit()?;
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    skip_scaling_list(b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let cycle = b.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width = b.ue()?.checked_add(1)?;
    let map_units = b.ue()?.checked_add(1)?;
    let frame_mbs_only = b.bit()?;
    Some((width, map_units.checked_mul(2 - frame_mbs_only)?))
}

fn skip_scaling_list(b: &mut Bits, size: u32) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + b.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 → 0, 1, 2, 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut b = Bits::new(&data);
        assert_eq!(
            (b.ue(), b.ue(), b.ue(), b.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(unescape(&[1, 0, 0, 3, 1, 0, 0, 3]), vec![1, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn reads_the_size_openh264_writes() {
        let mut picture = crate::codec::I420::default();
        picture.resize(48, 32);
        let mut enc = super::super::software::OpenH264Encoder::new(500_000).unwrap();
        let mut data = Vec::new();
        enc.encode(&picture, &mut data).unwrap();
        assert_eq!(sps_sizes_in_mbs(&data), Ok(vec![(3, 2)]));
    }

    #[test]
    fn garbage_is_no_panic() {
        for data in [&[0u8, 0, 1, 0x67][..], &[0, 0, 1, 0x67, 0xff], &[0, 0, 1]] {
            let _ = sps_sizes_in_mbs(data);
        }
    }
}
