//! security-context: a sandbox (Flatpak) opens a separate listening socket for its apps; the
//! clients arriving through it are marked sandboxed and do not see privileged globals
//! (clipboard access without focus, session lock, input method, toplevel lists and control,
//! security-context itself: see `protocols.rs`).

use smithay::{
    delegate_security_context,
    wayland::security_context::{
        SecurityContext, SecurityContextHandler, SecurityContextListenerSource,
    },
};

use crate::compositor::state::{ClientState, WayRay};

impl SecurityContextHandler for WayRay {
    fn context_created(&mut self, source: SecurityContextListenerSource, context: SecurityContext) {
        tracing::info!(
            engine = ?context.sandbox_engine,
            app_id = ?context.app_id,
            "sandbox socket created"
        );
        let inserted = self
            .loop_handle
            .insert_source(source, move |stream, _, state| {
                let data = std::sync::Arc::new(ClientState {
                    sandboxed: true,
                    ..ClientState::default()
                });
                match state.display_handle.insert_client(stream, data) {
                    Ok(_) => tracing::info!(
                        engine = ?context.sandbox_engine,
                        app_id = ?context.app_id,
                        "sandboxed client connected"
                    ),
                    Err(err) => tracing::warn!(%err, "cannot add a sandboxed client"),
                }
            });
        if let Err(err) = inserted {
            tracing::warn!(%err, "cannot listen on the sandbox socket");
        }
    }
}

delegate_security_context!(WayRay);
