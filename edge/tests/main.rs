//! Integration tests of `fieldpulse-edge` with real parts: a `mosquitto` broker on a free port per
//! test, an in-process HTTP receiver speaking the batch protocol (and the real cloud ingest where
//! the cloud's own deduplication is under test), and (for crash tests) the built
//! `fieldpulse-edge` binary as a separate process. TLS tests make their certificates at test time.

mod support;

mod broker_restart;
mod cli;
mod crash;
mod crash_mixed;
mod dead_letters;
mod disk_full;
mod duplicates;
mod long_outage;
mod malformed;
mod outage;
mod pipeline;
mod power_cut;
mod qos;
mod redelivery_window;
mod reload;
mod session_loss;
mod slow_uplink;
mod stall;
mod tls;
mod wiped_spool;
