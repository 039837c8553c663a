//! Tests of the telemetry readers.
