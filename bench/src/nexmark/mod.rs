//! Nexmark, the standard streaming benchmark (persons, auctions and bids of
//! an online auction): a deterministic generator compatible with the
//! published ones, CSV files for other systems, and the queries on brisk's
//! DataStream API.
//!
//! | module | what |
//! | --- | --- |
//! | [`random`] | `java.util.Random`, bit for bit (the published generators draw from it) |
//! | [`model`] | `Person`, `Auction`, `Bid`, `Event`, and `Text`, a string that need not be copied |
//! | [`generator`] | event `n` as a function of `n`; the deliberate differences from the published code |
//! | [`csv`] | `person.csv`, `auction.csv`, `bid.csv`: writing, reading, Flink SQL timestamps |
//! | [`queries`] | q0–q5, q7–q9, q11, q12, q14 |

pub mod csv;
pub mod generator;
pub mod model;
pub mod queries;
pub mod random;
