//! text-input-v3: the client side of input methods (GTK and Qt text fields announce where the
//! cursor is and take composed text). Smithay routes it to the input method of `input_method.rs`
//! following keyboard focus.

use smithay::delegate_text_input_manager;

use crate::compositor::state::WayRay;

delegate_text_input_manager!(WayRay);
