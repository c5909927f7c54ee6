//! Commands an operator runs next to `parley serve`: `parley doctor` (is everything this
//! configuration needs in place?) and `parley healthcheck` (is the running node ready?, for
//! container health checks where no curl is installed).

pub mod doctor;
pub mod healthcheck;
