//! The bidirectional streams an appliance opens after its control stream: each starts with a
//! [`StreamKind`] tag byte and goes to its subsystem (USB devices, protocol v9).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::Instrument;
use wayray_protocol::{sessions::ApplianceId, StreamKind};

use crate::daemon;
use crate::usb::{self, Grant};

/// What the bidirectional stream handlers of one connection need.
pub struct BidiContext {
    pub appliance: ApplianceId,
    pub daemon: daemon::Shared,
    /// What the appliance may forward now (changes with the session shown and the policy).
    pub usb_grant: watch::Receiver<Option<Grant>>,
    pub usb: Arc<usb::Forwarding>,
}

/// Accepts the appliance's further bidirectional streams until the connection ends.
pub async fn accept(conn: quinn::Connection, ctx: BidiContext) {
    let ctx = Arc::new(ctx);
    loop {
        let (send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(err) => {
                tracing::debug!(%err, "no more bidirectional streams");
                return;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(
            async move {
                let mut tag = [0u8; 1];
                if let Err(err) = recv.read_exact(&mut tag).await {
                    tracing::debug!(%err, "bidirectional stream ended before its tag");
                    return;
                }
                match StreamKind::from_byte(tag[0]) {
                    Some(StreamKind::Usb) => {
                        let daemon = ctx.daemon.clone();
                        let appliance = ctx.appliance;
                        let audit: usb::AuditSink = Arc::new(move |kind, grant, detail| {
                            if let Ok(mut d) = daemon.lock() {
                                d.usb_audit(appliance, kind, grant, detail);
                            }
                        });
                        usb::device::serve(
                            send,
                            recv,
                            ctx.usb_grant.clone(),
                            ctx.usb.clone(),
                            audit,
                        )
                        .await;
                    }
                    other => {
                        tracing::warn!(
                            tag = tag[0],
                            ?other,
                            "unexpected bidirectional stream; stopping it"
                        );
                        let _ = recv.stop(0u32.into());
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
    }
}
