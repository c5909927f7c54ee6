//! [`AudioCodec`] over the table-driven G.711 in [`crate::g711`].

use super::{AudioCodec, CodecError, CodecKind};
use crate::g711::G711;

/// PCMU or PCMA: 8 kHz, one byte per sample, stateless.
#[derive(Debug, Clone, Copy)]
pub struct G711Codec {
    law: G711,
}

impl G711Codec {
    /// A codec for one law.
    pub fn new(law: G711) -> Self {
        Self { law }
    }
}

impl AudioCodec for G711Codec {
    fn kind(&self) -> CodecKind {
        match self.law {
            G711::Ulaw => CodecKind::Pcmu,
            G711::Alaw => CodecKind::Pcma,
        }
    }

    fn sample_rate(&self) -> u32 {
        8000
    }

    fn rtp_clock_rate(&self) -> u32 {
        8000
    }

    fn frame_samples(&self) -> usize {
        160
    }

    /// Any number of samples; `out` must hold one byte per sample.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if out.len() < pcm.len() {
            return Err(CodecError::OutputTooSmall {
                needed: pcm.len(),
                available: out.len(),
            });
        }
        self.law.encode(pcm, out);
        Ok(pcm.len())
    }

    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::EmptyPayload);
        }
        if out.len() < payload.len() {
            return Err(CodecError::OutputTooSmall {
                needed: payload.len(),
                available: out.len(),
            });
        }
        self.law.decode(payload, out);
        Ok(payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::{alaw_encode, ulaw_decode};

    #[test]
    fn wraps_the_g711_tables() {
        let mut u = G711Codec::new(G711::Ulaw);
        let mut a = G711Codec::new(G711::Alaw);
        assert_eq!((u.kind(), a.kind()), (CodecKind::Pcmu, CodecKind::Pcma));
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
        let mut bytes = [0u8; 160];
        assert_eq!(a.encode(&pcm, &mut bytes), Ok(160));
        assert!(bytes.iter().zip(&pcm).all(|(&b, &s)| b == alaw_encode(s)));
        let mut back = [0i16; 160];
        assert_eq!(u.decode(&bytes[..10], &mut back), Ok(10));
        assert!(back[..10]
            .iter()
            .zip(&bytes)
            .all(|(&s, &b)| s == ulaw_decode(b)));
        assert_eq!(back[10], 0, "only the decoded prefix is written");
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut u = G711Codec::new(G711::Ulaw);
        assert_eq!(
            u.encode(&[0; 160], &mut [0; 100]),
            Err(CodecError::OutputTooSmall {
                needed: 160,
                available: 100
            })
        );
        assert!(matches!(
            u.decode(&[0; 160], &mut [0; 159]),
            Err(CodecError::OutputTooSmall { .. })
        ));
        assert_eq!(u.decode(&[], &mut [0; 160]), Err(CodecError::EmptyPayload));
        assert_eq!(u.conceal(&mut [0; 160]), None);
        assert_eq!(u.decode_fec(&[0xFF; 160], &mut [0; 160]), None);
    }
}
