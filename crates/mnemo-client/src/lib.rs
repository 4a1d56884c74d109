//! mnemo-client.
