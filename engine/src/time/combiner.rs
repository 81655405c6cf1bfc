//! Combines the watermarks of several inputs (sources of a shard, or the shards feeding an
//! exchange): the combined watermark is the minimum over the inputs that are not idle (or,
//! when all are idle, the furthest of them), and it never goes back.
//!
//! HOT PATH: updated per batch or watermark message; no allocation, no locks, no logging.

use crate::time::watermark::WATERMARK_MIN;

#[derive(Clone, Copy, Debug)]
struct InputState {
    watermark: i64,
    idle: bool,
}

/// The minimum watermark over active inputs.
#[derive(Clone, Debug)]
pub struct WatermarkCombiner {
    inputs: Vec<InputState>,
    combined: i64,
}

impl WatermarkCombiner {
    /// Creates a combiner for `inputs` inputs, all at [`WATERMARK_MIN`] and active.
    pub fn new(inputs: usize) -> Self {
        let state = InputState {
            watermark: WATERMARK_MIN,
            idle: false,
        };
        Self {
            inputs: vec![state; inputs],
            combined: WATERMARK_MIN,
        }
    }

    /// Records the watermark of `input` (which is then active) and returns the new combined
    /// watermark if it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let s = &mut self.inputs[input];
        s.watermark = s.watermark.max(watermark);
        s.idle = false;
        self.recompute()
    }

    /// Marks `input` idle: it no longer holds back the combined watermark until its next
    /// update. Returns the new combined watermark if it advanced.
    pub fn set_idle(&mut self, input: usize) -> Option<i64> {
        self.inputs[input].idle = true;
        self.recompute()
    }

    /// Each input's watermark (idle inputs as they are), for a checkpoint.
    pub fn input_watermarks(&self) -> Vec<i64> {
        self.inputs.iter().map(|s| s.watermark).collect()
    }

    /// Resumes from a checkpoint's input watermarks; refuses another number of inputs.
    pub fn restore_inputs(&mut self, watermarks: &[i64]) -> Result<(), String> {
        if watermarks.len() != self.inputs.len() {
            return Err(format!(
                "{} input watermarks for {} inputs",
                watermarks.len(),
                self.inputs.len()
            ));
        }
        for (s, w) in self.inputs.iter_mut().zip(watermarks) {
            s.watermark = *w;
        }
        self.recompute();
        Ok(())
    }

    /// Returns the combined watermark.
    pub fn watermark(&self) -> i64 {
        self.combined
    }

    fn recompute(&mut self) -> Option<i64> {
        let min = self
            .inputs
            .iter()
            .filter(|s| !s.idle)
            .map(|s| s.watermark)
            .min();
        // With every input idle, nothing is holding time back: it advances to the furthest
        // watermark any input reported (records an idle input sends later may then be late,
        // which is the trade-off of an idle timeout).
        let candidate = match min {
            Some(m) => m,
            None => self.inputs.iter().map(|s| s.watermark).max()?,
        };
        if candidate > self.combined {
            self.combined = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::watermark::WATERMARK_END;

    #[test]
    fn minimum_over_active_inputs() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.update(0, 10), None);
        assert_eq!(c.update(1, 20), None);
        assert_eq!(c.update(2, 5), Some(5));
        assert_eq!(c.update(2, 30), Some(10));
    }

    #[test]
    fn an_idle_input_does_not_hold_back_time() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 100);
        assert_eq!(c.watermark(), WATERMARK_MIN, "input 1 has said nothing yet");
        assert_eq!(c.set_idle(1), Some(100));
        assert_eq!(c.update(0, 150), Some(150));
        // Input 1 comes back behind: the combined watermark does not go back.
        assert_eq!(c.update(1, 120), None);
        assert_eq!(c.watermark(), 150);
        assert_eq!(c.update(0, 200), None, "input 1 at 120 holds time at 150");
        assert_eq!(c.update(1, WATERMARK_END), Some(200));
        assert_eq!(c.set_idle(0), Some(WATERMARK_END));
    }

    #[test]
    fn when_every_input_is_idle_time_reaches_the_furthest_watermark() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 98);
        assert_eq!(
            c.set_idle(0),
            None,
            "input 1 is active and has said nothing"
        );
        assert_eq!(c.set_idle(1), Some(98));
        assert_eq!(c.update(1, 50), None, "time does not go back");
    }
}
