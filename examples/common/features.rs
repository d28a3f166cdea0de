//! What the moving-average examples share: the input line and the keyed
//! function that keeps each user's previous value.

use brisk::prelude::*;
use serde::Deserialize;

/// One input line.
#[derive(Clone, Debug, Deserialize)]
pub struct Feature {
    /// The user.
    pub user: String,
    /// The feature value.
    pub value: f64,
}

/// Keeps each user's previous value.
#[derive(Clone, Default)]
pub struct MovingAverage {
    previous: ValueState<f64>,
}

impl KeyedProcessFunction<String, Feature, (String, f64, f64)> for MovingAverage {
    fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), UserError> {
        self.previous = ctx.value_state("previous")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        f: Feature,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, (String, f64, f64)>,
    ) -> Result<(), UserError> {
        let mut previous = ctx.value(&self.previous);
        let average = match previous.get() {
            Some(p) => (p + f.value) / 2.0,
            None => f.value,
        };
        previous.set(f.value);
        out.collect((f.user, f.value, average));
        Ok(())
    }
}
