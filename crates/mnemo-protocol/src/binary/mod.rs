//! The binary protocol, laid out by what each side needs: `header` (magic,
//! header layout, opcodes, status codes), `request` (a server's framing and
//! validation of requests) and `response` (response packets and memcached's
//! error texts). The client side's request encoders and packet parser are
//! in [`crate::client::binary`].

mod header;
mod request;
mod response;

pub use header::{opcode, status, Header, Opcode, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
pub use request::{
    allowed_unauthenticated, decode, frame, lengths_ok, Cmd, Frame, Packet, Reject, StoreKind,
    MAX_SASL_MECH_LEN,
};
pub use response::{encode_error, encode_response, encode_stat, error_text};
