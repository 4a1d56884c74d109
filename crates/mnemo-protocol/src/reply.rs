//! Client-side: parse server replies, encode requests.
