//! Per-key order survives an exchange: records of one key sent by one core
//! arrive in the order that core sent them (per-channel FIFO), at any core
//! count, including more cores than CPUs.

use brisk::prelude::*;

/// Per key, the last index seen from each sending split; emits one
/// `(key, index, in_order)` per record.
#[derive(Clone)]
struct OrderCheck {
    last: MapState<u64, u64>,
    splits: u64,
    n: u64,
}

impl KeyedProcessFunction<u64, (u64, u64), bool> for OrderCheck {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.last = ctx.map_state("last")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_key, index): (u64, u64),
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, bool>,
    ) -> Result<(), UserError> {
        // The generator gives split s the contiguous range [n*s/k, n*(s+1)/k);
        // the flat_map made FAN_OUT records of each.
        let origin = index / FAN_OUT;
        let split = (0..self.splits).find(|s| origin < self.n * (s + 1) / self.splits).unwrap();
        // Some work per record, so that queues fill and senders queue batches.
        let mut x = index;
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7));
        }
        let mut last = ctx.map(&self.last);
        let in_order = last.get(&split).is_none_or(|&prev| prev < index);
        last.put(split, index);
        out.collect(in_order);
        Ok(())
    }
}

/// Each generated record becomes this many, so one input batch fills several
/// exchange batches per destination and backpressure queues them.
const FAN_OUT: u64 = 8;

fn run(cores: usize, n: u64, keys: u64) -> Vec<bool> {
    let env = StreamEnv::new(JobConfig::with_cores(cores));
    let out = env
        .from_source(GeneratorSource::new(n, |i| i))
        .flat_map(move |i: u64| {
            (0..FAN_OUT).map(move |j| {
                let index = i * FAN_OUT + j;
                (brisk::state::hash::fmix64(index) % keys, index)
            })
        })
        .key_by(|r: &(u64, u64)| r.0)
        .process(OrderCheck { last: Default::default(), splits: cores as u64, n })
        .collect();
    env.execute().unwrap();
    out.take()
}

#[test]
fn per_key_order_is_preserved_across_the_key_by_exchange() {
    for cores in [1, 2, 3, 4] {
        let n = 40_000;
        let seen = run(cores, n, 97);
        assert_eq!(seen.len() as u64, n * FAN_OUT, "every record arrives once at {cores} cores");
        let out_of_order = seen.iter().filter(|ok| !**ok).count();
        assert_eq!(out_of_order, 0, "records out of order at {cores} cores");
    }
}
