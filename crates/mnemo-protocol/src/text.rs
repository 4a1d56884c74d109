//! Server-side text protocol: request parsing in place.
