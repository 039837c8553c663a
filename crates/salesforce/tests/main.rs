//! The client against the in-process emulator: the reference's conformance
//! checklist (§8), strictness, resilience under injected faults, SOQL paging
//! and Bulk 2.0. One binary, modules per area.

mod support;

mod conformance;
mod resilience;
mod volume;
