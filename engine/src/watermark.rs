//! Combining watermarks over the input channels of one operator instance.
//!
//! # Design note
//!
//! An operator instance with several input channels (a union, or one channel
//! per sending core behind an exchange) must emit a watermark only when *all*
//! its inputs have passed it. [`WatermarkValve`] is that decision as a pure
//! state machine: the runtime feeds it what arrived on which channel and
//! forwards whatever it returns. It follows Flink's `StatusWatermarkValve`
//! (shared/SEMANTICS.md):
//!
//! - each channel's watermark is monotone; a lower one is ignored;
//! - the output is the minimum over *aligned* channels (active ones whose
//!   watermark has caught up with the last output), emitted only when it
//!   increases;
//! - an idle channel leaves the minimum; when every channel is idle the maximum
//!   of their watermarks is emitted, then the status `Idle`;
//! - a channel turning active rejoins the minimum only once its watermark is
//!   at least the last emitted one;
//! - an ended channel counts as a channel at `i64::MAX` (bounded sources emit
//!   that watermark before ending anyway); when all channels ended the valve
//!   reports end of input, after any watermark that became due.
//!
//! Invariant: emitted watermarks strictly increase.

use crate::batch::{Control, MAX_WATERMARK, MIN_WATERMARK, StreamStatus, Timestamp};

#[derive(Debug, Clone)]
struct Channel {
    watermark: Timestamp,
    active: bool,
    aligned: bool,
    ended: bool,
}

/// Per-operator-instance watermark combiner (owned by one core).
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    channels: Vec<Channel>,
    last_output: Timestamp,
    output_idle: bool,
    ended: usize,
}

impl WatermarkValve {
    /// A valve over `channels` inputs, all active at `i64::MIN`.
    pub fn new(channels: usize) -> Self {
        assert!(channels > 0, "an operator needs at least one input channel");
        Self {
            channels: vec![
                Channel { watermark: MIN_WATERMARK, active: true, aligned: true, ended: false };
                channels
            ],
            last_output: MIN_WATERMARK,
            output_idle: false,
            ended: 0,
        }
    }

    /// Number of input channels.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// The last watermark emitted.
    pub fn current(&self) -> Timestamp {
        self.last_output
    }

    /// Whether every channel has ended.
    pub fn all_ended(&self) -> bool {
        self.ended == self.channels.len()
    }

    /// Feeds one control message that arrived on `channel`; appends what the
    /// operator must act on (and forward) to `out`, in order.
    pub fn on_control(&mut self, channel: usize, control: Control, out: &mut Vec<Control>) {
        match control {
            Control::Watermark(w) => self.on_watermark(channel, w, out),
            Control::Status(s) => self.on_status(channel, s, out),
            Control::EndOfInput => self.on_end(channel, out),
            // Barriers are aligned by the gate, not combined; latency
            // markers pass as they come.
            Control::Barrier(_) | Control::Latency(_) => out.push(control),
        }
    }

    fn on_watermark(&mut self, ch: usize, w: Timestamp, out: &mut Vec<Control>) {
        let last_output = self.last_output;
        let c = &mut self.channels[ch];
        if c.ended || !c.active || w <= c.watermark {
            return;
        }
        c.watermark = w;
        if !c.aligned && w >= last_output {
            c.aligned = true;
        }
        self.emit_min_of_aligned(out);
    }

    fn on_status(&mut self, ch: usize, status: StreamStatus, out: &mut Vec<Control>) {
        let c = &mut self.channels[ch];
        if c.ended {
            return;
        }
        match status {
            StreamStatus::Idle if c.active => {
                c.active = false;
                c.aligned = false;
                if self.channels.iter().all(|c| !c.active) {
                    let max = self.channels.iter().map(|c| c.watermark).max().unwrap_or(MIN_WATERMARK);
                    if max > self.last_output {
                        self.last_output = max;
                        out.push(Control::Watermark(max));
                    }
                    self.output_idle = true;
                    out.push(Control::Status(StreamStatus::Idle));
                } else {
                    self.emit_min_of_aligned(out);
                }
            }
            StreamStatus::Active if !c.active => {
                c.active = true;
                if c.watermark >= self.last_output {
                    c.aligned = true;
                }
                if self.output_idle {
                    self.output_idle = false;
                    out.push(Control::Status(StreamStatus::Active));
                }
            }
            _ => {}
        }
    }

    fn on_end(&mut self, ch: usize, out: &mut Vec<Control>) {
        if self.channels[ch].ended {
            return;
        }
        {
            let c = &mut self.channels[ch];
            c.ended = true;
            c.active = true;
            c.aligned = true;
            c.watermark = MAX_WATERMARK;
        }
        self.ended += 1;
        if self.output_idle && self.channels.iter().any(|c| c.active) {
            self.output_idle = false;
            out.push(Control::Status(StreamStatus::Active));
        }
        self.emit_min_of_aligned(out);
        if self.all_ended() {
            out.push(Control::EndOfInput);
        }
    }

    fn emit_min_of_aligned(&mut self, out: &mut Vec<Control>) {
        let min = self.channels.iter().filter(|c| c.aligned).map(|c| c.watermark).min();
        if let Some(min) = min.filter(|&m| m > self.last_output) {
            self.last_output = min;
            out.push(Control::Watermark(min));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Control::*;
    use StreamStatus::*;

    fn feed(v: &mut WatermarkValve, ch: usize, c: Control) -> Vec<Control> {
        let mut out = Vec::new();
        v.on_control(ch, c, &mut out);
        out
    }

    #[test]
    fn emits_min_over_channels_only_when_it_increases() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(feed(&mut v, 0, Watermark(10)), vec![]);
        assert_eq!(feed(&mut v, 1, Watermark(5)), vec![Watermark(5)]);
        assert_eq!(feed(&mut v, 1, Watermark(3)), vec![], "lower watermark ignored");
        assert_eq!(feed(&mut v, 1, Watermark(20)), vec![Watermark(10)]);
        assert_eq!(feed(&mut v, 0, Watermark(15)), vec![Watermark(15)]);
    }

    #[test]
    fn single_channel_passes_increasing_watermarks() {
        let mut v = WatermarkValve::new(1);
        assert_eq!(feed(&mut v, 0, Watermark(1)), vec![Watermark(1)]);
        assert_eq!(feed(&mut v, 0, Watermark(1)), vec![]);
        assert_eq!(feed(&mut v, 0, EndOfInput), vec![Watermark(MAX_WATERMARK), EndOfInput]);
    }

    #[test]
    fn idle_channel_leaves_the_min_and_all_idle_emits_max_then_idle() {
        let mut v = WatermarkValve::new(3);
        feed(&mut v, 0, Watermark(10));
        feed(&mut v, 1, Watermark(20));
        assert_eq!(feed(&mut v, 2, Watermark(5)), vec![Watermark(5)]);
        assert_eq!(feed(&mut v, 2, Status(Idle)), vec![Watermark(10)]);
        assert_eq!(feed(&mut v, 0, Status(Idle)), vec![Watermark(20)]);
        assert_eq!(feed(&mut v, 1, Status(Idle)), vec![Status(Idle)]);
        // A channel turning active again is behind (5 < 20): it does not
        // rejoin the min until it catches up.
        assert_eq!(feed(&mut v, 2, Status(Active)), vec![Status(Active)]);
        assert_eq!(feed(&mut v, 2, Watermark(15)), vec![]);
        assert_eq!(feed(&mut v, 2, Watermark(25)), vec![Watermark(25)]);
    }

    #[test]
    fn all_idle_with_max_above_output_emits_it_first() {
        let mut v = WatermarkValve::new(2);
        feed(&mut v, 0, Watermark(7));
        assert_eq!(feed(&mut v, 0, Status(Idle)), vec![]);
        assert_eq!(feed(&mut v, 1, Status(Idle)), vec![Watermark(7), Status(Idle)]);
    }

    #[test]
    fn end_of_all_channels_emits_max_then_end() {
        let mut v = WatermarkValve::new(2);
        feed(&mut v, 0, Watermark(3));
        assert_eq!(feed(&mut v, 0, EndOfInput), vec![]);
        assert_eq!(feed(&mut v, 1, Watermark(4)), vec![Watermark(4)]);
        assert_eq!(feed(&mut v, 1, Watermark(MAX_WATERMARK)), vec![Watermark(MAX_WATERMARK)]);
        assert_eq!(feed(&mut v, 1, EndOfInput), vec![EndOfInput]);
        assert!(v.all_ended());
    }

    #[test]
    fn random_feeds_keep_output_monotone_and_below_every_active_aligned_channel() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..200 {
            let n = rng.usize(1..5);
            let mut v = WatermarkValve::new(n);
            let mut last = MIN_WATERMARK;
            let mut wms = vec![MIN_WATERMARK; n];
            let mut active = vec![true; n];
            for _ in 0..50 {
                let ch = rng.usize(0..n);
                let c = match rng.u8(0..10) {
                    0 => Status(Idle),
                    1 => Status(Active),
                    _ => Watermark(rng.i64(-20..100)),
                };
                // Flink ignores watermarks arriving on an idle channel.
                match c {
                    Watermark(w) if active[ch] => wms[ch] = wms[ch].max(w),
                    Status(s) => active[ch] = s == Active,
                    _ => {}
                }
                for o in feed(&mut v, ch, c) {
                    if let Watermark(w) = o {
                        assert!(w > last, "seed {seed}: {w} after {last}");
                        assert!(wms.contains(&w), "seed {seed}: {w} is some channel's watermark");
                        last = w;
                    }
                }
            }
        }
    }
}
