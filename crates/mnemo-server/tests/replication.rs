//! Replication (issue #13) between real mnemo processes on loopback.
