//! The vocabulary every subsystem shares: WireGuard keys and gateway modes, with their text
//! forms, and users' text as messages quote it. It sits below the ledger, the plan and everything after them, and imports none of
//! them, so both sides of every arrow in the data flow can name the same things.

mod gateway_mode;
mod text;
mod user_text;
mod wg_key;

pub use gateway_mode::GatewayMode;
pub(crate) use text::text_serde;
pub use text::{KeyTextError, decode_base64_exact};
pub use user_text::{MAX_SHOWN_CHARS, MAX_SHOWN_MESSAGE, UserText};
pub use wg_key::WgKey;
