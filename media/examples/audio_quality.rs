//! Audio-quality harness: speech through PCMU, a simulated lossy and jittery network and
//! the receive path, decoded three ways for PESQ (`scripts/audio_quality.py` scores them).
//!
//! ```text
//! audio_quality IN.wav OUTDIR [--loss PCT] [--jitter-ms MS] [--seed N]
//! ```
//!
//! * The input (mono WAV, any rate) is converted to 8 kHz and written as `OUTDIR/ref.wav`:
//!   PESQ's reference, so reference and degraded files share one conversion.
//! * The 8 kHz speech is cut into 20 ms frames, PCMU-encoded and sent as RTP packets, one
//!   every 20 ms. The network drops each packet with probability `PCT` % and delays the rest
//!   by a uniform random time in `[0, MS]` ms (so packets reorder), from a seeded PRNG: the
//!   same seed gives the same packet trace.
//! * The receiver runs on simulated time: packets are pushed into one [`JitterBuffer`] at
//!   their arrival instants, and the buffer is popped every 20 ms. Each pop is rendered by
//!   three strategies that see the same [`Playout`] sequence, so only what is written for a
//!   `Lost` frame (and for `Empty`) differs:
//!   - `zero_fill`: silence for lost frames;
//!   - `repeat`: the last decoded frame again;
//!   - `parley`: the receiver's own path: codec concealment if it has one, else
//!     [`Concealer`], and [`ComfortNoise`] when there is nothing to play.
//! * Output is in playout order, as a listener hears it, starting at the tick that played
//!   the first packet and placed at that packet's timestamp offset: the buffer's initial
//!   playout delay is trimmed, so without loss or delay adaptation the output is sample
//!   aligned with `ref.wav`. Later skip/stretch actions of the buffer shift the alignment
//!   by whole frames; they are counted in the JSON (`warp`).
//! * 200 ms of silence is appended to the 8 kHz speech before it is sent and written as the
//!   reference (see [`TAIL_FRAMES`]), and every output has the reference's length.
//! * `OUTDIR/codec_only.wav` is the PCMU round trip with no network: the ceiling.
//!
//! One JSON line of statistics goes to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use parley_media::codec::{new_codec, CodecKind, OpusSettings};
use parley_media::resample::{Resampler, SUPPORTED_RATES};
use parley_media::{
    parse_rtp, read_wav, resample_linear, write_packet, ComfortNoise, Concealer, JitterBuffer,
    JitterConfig, Playout, RtpSender, WavWriter,
};

const RATE: u32 = 8_000;
const FRAME: usize = 160;
const FRAME_US: i64 = 20_000;
const PT_PCMU: u8 = 0;
/// 200 ms of silence appended to the speech (reference and sent stream alike). When the jitter
/// buffer's skips and stretches shift the output by a frame or two, what moves across the end
/// of the file is this silence, not the last word: PESQ scores a clip whose final 20 ms of
/// speech is cut off far lower (4.05 against 4.48 for one 12 s clip) although a listener
/// would hardly notice.
const TAIL_FRAMES: usize = 10;

struct Args {
    input: PathBuf,
    outdir: PathBuf,
    loss_pct: f64,
    jitter_ms: f64,
    seed: u64,
}

fn usage() -> String {
    "usage: audio_quality IN.wav OUTDIR [--loss PCT] [--jitter-ms MS] [--seed N]".to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut pos = Vec::new();
    let (mut loss_pct, mut jitter_ms, mut seed) = (0.0f64, 30.0f64, 1u64);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--loss" => {
                loss_pct = value("--loss")?
                    .parse()
                    .map_err(|e| format!("--loss: {e}"))?
            }
            "--jitter-ms" => {
                jitter_ms = value("--jitter-ms")?
                    .parse()
                    .map_err(|e| format!("--jitter-ms: {e}"))?
            }
            "--seed" => {
                seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "-h" | "--help" => return Err(usage()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{}", usage())),
            _ => pos.push(PathBuf::from(a)),
        }
    }
    if pos.len() != 2 {
        return Err(usage());
    }
    if !(0.0..=100.0).contains(&loss_pct) {
        return Err(format!("--loss {loss_pct} is not a percentage in 0..=100"));
    }
    if !(0.0..=1000.0).contains(&jitter_ms) {
        return Err(format!("--jitter-ms {jitter_ms} is not in 0..=1000"));
    }
    let outdir = pos.pop().unwrap_or_default();
    let input = pos.pop().unwrap_or_default();
    Ok(Args {
        input,
        outdir,
        loss_pct,
        jitter_ms,
        seed,
    })
}

/// SplitMix64: small, seedable, good enough for a network model.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Convert to 8 kHz with the media crate's band-limiting resampler, its delay removed so
/// the result is aligned with the input. Rates it does not take go to 48 kHz linearly first.
fn to_8k(samples: &[i16], rate: u32) -> Result<(Vec<i16>, &'static str), String> {
    if rate == RATE {
        return Ok((samples.to_vec(), "none"));
    }
    let (src, from, how) = if SUPPORTED_RATES.contains(&rate) {
        (samples.to_vec(), rate, "rubato-fft")
    } else {
        (
            resample_linear(samples, rate, 48_000),
            48_000,
            "linear-to-48k+rubato-fft",
        )
    };
    let frame_in = from as usize / 50;
    let mut r = Resampler::new(from, RATE, frame_in).map_err(|e| e.to_string())?;
    let want = src.len() * RATE as usize / from as usize;
    let delay = r.delay();
    let mut out = Vec::with_capacity(want + delay + 2 * FRAME);
    let mut buf = vec![0i16; r.frame_out()];
    let mut block = vec![0i16; frame_in];
    let mut at = 0;
    while out.len() < want + delay {
        block.fill(0);
        if at < src.len() {
            let n = frame_in.min(src.len() - at);
            block[..n].copy_from_slice(&src[at..at + n]);
        }
        at += frame_in;
        let n = r.process(&block, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    Ok((out[delay..delay + want].to_vec(), how))
}

fn write_wav(path: &Path, samples: &[i16]) -> Result<(), String> {
    let mut w = WavWriter::create(path, RATE).map_err(|e| format!("{}: {e}", path.display()))?;
    w.write_samples(samples)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    w.finalize().map_err(|e| format!("{}: {e}", path.display()))
}

/// One RTP packet on the simulated wire.
struct Wire {
    arrival_us: i64,
    send_us: i64,
    bytes: Vec<u8>,
}

/// How one strategy renders the jitter buffer's output.
struct Track {
    out: Vec<i16>,
}

#[derive(Default)]
struct Warp {
    /// (output position - timestamp position) of the last played packet, in samples.
    offset: i64,
    min: i64,
    max: i64,
    changes: u64,
    /// The first few changes: (output time in ms, new offset in samples).
    events: Vec<(u64, i64)>,
}

fn run(args: &Args) -> Result<String, String> {
    let audio = read_wav(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    if audio.samples.is_empty() {
        return Err(format!("{}: no samples", args.input.display()));
    }
    let (mut speech, resampler) = to_8k(&audio.samples, audio.sample_rate)?;
    if speech.len() < 10 * FRAME {
        return Err("input is shorter than 200 ms".into());
    }
    // Whole frames, then a tail of silence (see TAIL_FRAMES).
    let frames = speech.len().div_ceil(FRAME) + TAIL_FRAMES;
    speech.resize(frames * FRAME, 0);
    std::fs::create_dir_all(&args.outdir).map_err(|e| format!("{}: {e}", args.outdir.display()))?;
    write_wav(&args.outdir.join("ref.wav"), &speech)?;

    // ---- sender: PCMU in 20 ms RTP packets ----
    let mut rng = Prng(args.seed ^ 0x05EE_D0FA_0D10);
    let mut enc = new_codec(CodecKind::Pcmu, OpusSettings::default()).map_err(|e| e.to_string())?;
    let mut codec_only =
        new_codec(CodecKind::Pcmu, OpusSettings::default()).map_err(|e| e.to_string())?;
    let initial_seq = (rng.next_u64() & 0xFFFF) as u16;
    let initial_ts = rng.next_u64() as u32;
    let mut sender = RtpSender::new(rng.next_u64() as u32, PT_PCMU, initial_seq, initial_ts);
    // Receiver ticks fall at a seeded phase within the frame: its clock is not the sender's.
    let phase_us = (rng.unit() * FRAME_US as f64) as i64;
    let mut payload = [0u8; 512];
    let mut packet = [0u8; 1500];
    let mut pcm = [0i16; FRAME];
    let mut ceiling = Vec::with_capacity(speech.len());
    let mut wire = Vec::with_capacity(frames);
    let mut dropped = 0u64;
    for (k, chunk) in speech.chunks_exact(FRAME).enumerate() {
        let n = enc.encode(chunk, &mut payload).map_err(|e| e.to_string())?;
        codec_only
            .decode(&payload[..n], &mut pcm)
            .map_err(|e| e.to_string())?;
        ceiling.extend_from_slice(&pcm);
        let header = sender.next_header(FRAME as u32, k == 0);
        let len = write_packet(&header, &payload[..n], &mut packet).map_err(|e| e.to_string())?;
        // Network: one loss draw and one delay draw per packet, whatever the loss, so the
        // delays of surviving packets do not depend on the loss rate's draws.
        let lost = rng.unit() * 100.0 < args.loss_pct;
        let extra_us = (rng.unit() * args.jitter_ms * 1_000.0).round() as i64;
        let send_us = k as i64 * FRAME_US;
        if lost {
            dropped += 1;
            continue;
        }
        wire.push(Wire {
            arrival_us: send_us + extra_us,
            send_us,
            bytes: packet[..len].to_vec(),
        });
    }
    write_wav(&args.outdir.join("codec_only.wav"), &ceiling)?;
    wire.sort_by_key(|w| w.arrival_us); // stable: equal arrivals keep send order
    let reordered = wire
        .windows(2)
        .filter(|w| w[1].send_us < w[0].send_us)
        .count();

    // ---- receiver on simulated time ----
    let mut dec = new_codec(CodecKind::Pcmu, OpusSettings::default()).map_err(|e| e.to_string())?;
    let mut jb =
        JitterBuffer::new(JitterConfig::for_clock_rate(RATE)).map_err(|e| e.to_string())?;
    let mut concealer = Concealer::new(RATE);
    let mut noise = ComfortNoise::new(RATE);
    let mut zero = Track { out: Vec::new() };
    let mut repeat = Track { out: Vec::new() };
    let mut parley = Track { out: Vec::new() };
    let mut last_good = [0i16; FRAME];
    let mut jb_payload = [0u8; 1500];
    let base = Instant::now();
    let at = |us: i64| base + Duration::from_micros(us as u64);
    let total = speech.len();
    let mut next = 0usize;
    let mut started: Option<(i64, i64)> = None; // (tick time, send time) of the first packet played
    let mut warp = Warp::default();
    let (mut played, mut lost_frames, mut empty_frames) = (0u64, 0u64, 0u64);
    let mut delay_sum_us = 0i64;
    let max_ticks = frames as i64 + 200;
    for tick in 0..max_ticks {
        let now_us = phase_us + tick * FRAME_US;
        while next < wire.len() && wire[next].arrival_us <= now_us {
            let w = &wire[next];
            let p = parse_rtp(&w.bytes).map_err(|e| e.to_string())?;
            jb.push(
                at(w.arrival_us),
                p.header.sequence,
                p.header.timestamp,
                p.header.marker,
                p.payload,
            );
            next += 1;
        }
        let playout = jb.pop(at(now_us), &mut jb_payload);
        if started.is_none() {
            let Playout::Packet { timestamp, .. } = playout else {
                continue;
            };
            // Trim the initial playout delay: the output starts at this packet's position.
            let pos = timestamp.wrapping_sub(initial_ts) as usize;
            let send_us = (pos / FRAME) as i64 * FRAME_US;
            started = Some((now_us, send_us));
            for t in [&mut zero, &mut repeat, &mut parley] {
                t.out.resize(pos.min(total), 0);
            }
        }
        match playout {
            Playout::Packet { len, timestamp } => {
                let n = dec
                    .decode(&jb_payload[..len], &mut pcm)
                    .map_err(|e| e.to_string())?;
                if n != FRAME {
                    return Err(format!("decoded {n} samples, expected {FRAME}"));
                }
                played += 1;
                let pos = i64::from(timestamp.wrapping_sub(initial_ts));
                delay_sum_us += now_us - (pos / FRAME as i64) * FRAME_US;
                let offset = zero.out.len() as i64 - pos;
                if played == 1 {
                    warp.offset = offset;
                } else if offset != warp.offset {
                    warp.changes += 1;
                    warp.offset = offset;
                    if warp.events.len() < 16 {
                        warp.events
                            .push((zero.out.len() as u64 * 1_000 / u64::from(RATE), offset));
                    }
                }
                warp.min = warp.min.min(offset);
                warp.max = warp.max.max(offset);
                zero.out.extend_from_slice(&pcm);
                repeat.out.extend_from_slice(&pcm);
                last_good = pcm;
                concealer.good_frame(&mut pcm);
                noise.observe(&pcm);
                parley.out.extend_from_slice(&pcm);
            }
            Playout::Lost => {
                lost_frames += 1;
                zero.out.extend_from_slice(&[0; FRAME]);
                repeat.out.extend_from_slice(&last_good);
                if dec.conceal(&mut pcm).is_none() {
                    concealer.conceal(&mut pcm);
                }
                parley.out.extend_from_slice(&pcm);
            }
            Playout::Empty | Playout::Buffering => {
                empty_frames += 1;
                zero.out.extend_from_slice(&[0; FRAME]);
                repeat.out.extend_from_slice(&[0; FRAME]);
                noise.fill(&mut pcm);
                parley.out.extend_from_slice(&pcm);
            }
        }
        if next >= wire.len() && zero.out.len() >= total {
            break;
        }
    }
    let Some((start_us, first_send_us)) = started else {
        return Err("no packet was ever played".into());
    };
    for (name, t) in [
        ("zero_fill", &mut zero),
        ("repeat", &mut repeat),
        ("parley", &mut parley),
    ] {
        t.out.resize(total, 0);
        write_wav(&args.outdir.join(format!("{name}.wav")), &t.out)?;
    }

    let s = jb.stats();
    let mean_delay_ms = if played > 0 {
        delay_sum_us as f64 / played as f64 / 1_000.0
    } else {
        0.0
    };
    Ok(format!(
        concat!(
            "{{\"input\":{:?},\"input_rate\":{},\"resampler\":\"{}\",\"seconds\":{:.2},",
            "\"loss_pct\":{},\"jitter_ms\":{},\"seed\":{},",
            "\"packets_sent\":{},\"packets_dropped\":{},\"packets_reordered\":{},",
            "\"frames_played\":{},\"frames_lost_or_stretched\":{},\"frames_empty\":{},",
            "\"jb\":{{\"received\":{},\"lost\":{},\"late\":{},\"concealed_frames\":{},",
            "\"skipped_frames\":{},\"duplicates\":{},\"resets\":{},",
            "\"target_delay_ms\":{},\"current_delay_ms\":{},\"jitter_ms\":{:.2}}},",
            "\"first_play_delay_ms\":{:.1},\"mean_play_delay_ms\":{:.1},",
            "\"warp\":{{\"final_samples\":{},\"min_samples\":{},\"max_samples\":{},\"changes\":{},",
            "\"events_ms_samples\":[{}]}}}}"
        ),
        args.input.display().to_string(),
        audio.sample_rate,
        resampler,
        total as f64 / f64::from(RATE),
        args.loss_pct,
        args.jitter_ms,
        args.seed,
        frames,
        dropped,
        reordered,
        played,
        lost_frames,
        empty_frames,
        s.received,
        s.lost,
        s.late,
        s.concealed_frames,
        s.skipped_frames,
        s.duplicates,
        s.resets,
        s.target_delay_ms,
        s.current_delay_ms,
        s.jitter_ms,
        (start_us - first_send_us) as f64 / 1_000.0,
        mean_delay_ms,
        warp.offset,
        warp.min,
        warp.max,
        warp.changes,
        warp.events
            .iter()
            .map(|(t, o)| format!("[{t},{o}]"))
            .collect::<Vec<_>>()
            .join(","),
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audio_quality: {e}");
            ExitCode::FAILURE
        }
    }
}
