//! One PC/SC stream to the attached appliance: typed requests out, typed answers in (see
//! `wayray_protocol::pcsc`).

use wayray_protocol::{
    framing,
    pcsc::{PcscReply, PcscRequest, MAX_PCSC_MESSAGE_LEN},
    FrameReader, FramingError, StreamKind,
};

use super::Attachment;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a PC/SC stream to the appliance: {0}")]
    Open(#[from] quinn::ConnectionError),
    #[error("cannot write to the appliance: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("cannot read from the appliance: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the appliance sent a malformed PC/SC answer: {0}")]
    Malformed(#[from] FramingError),
    #[error("the appliance ended the PC/SC stream")]
    Ended,
}

/// A PC/SC context at one appliance.
pub struct Link {
    /// Which appliance (the session may have moved on since).
    pub appliance: u64,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    frames: FrameReader,
}

impl Link {
    /// Opens a stream to `to` and establishes a context there.
    pub async fn open(to: &Attachment) -> Result<Self, LinkError> {
        let (mut send, recv) = to.connection.open_bi().await?;
        // The tag goes out at once, so the appliance sees the stream before the first request.
        send.write_all(&[StreamKind::Pcsc as u8]).await?;
        let mut link = Self {
            appliance: to.appliance,
            send,
            recv,
            frames: FrameReader::new(MAX_PCSC_MESSAGE_LEN),
        };
        link.send(&PcscRequest::Establish).await?;
        match link.recv().await? {
            PcscReply::Done => Ok(link),
            PcscReply::Failed { code } => {
                tracing::info!(
                    code = format!("{code:#x}"),
                    "the appliance has no PC/SC context to lend"
                );
                Err(LinkError::Ended)
            }
            other => {
                tracing::warn!(?other, "unexpected answer to Establish");
                Err(LinkError::Ended)
            }
        }
    }

    pub async fn send(&mut self, request: &PcscRequest) -> Result<(), LinkError> {
        let bytes = framing::encode(request)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// The next answer. Cancel-safe: bytes read stay in the frame reader.
    pub async fn recv(&mut self) -> Result<PcscReply, LinkError> {
        loop {
            if let Some(reply) = self.frames.next()? {
                return Ok(reply);
            }
            match self.recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => self.frames.push(&chunk.bytes),
                None => return Err(LinkError::Ended),
            }
        }
    }

    pub async fn call(&mut self, request: &PcscRequest) -> Result<PcscReply, LinkError> {
        self.send(request).await?;
        self.recv().await
    }

    /// Ends the context at the appliance (and every card connected through it).
    pub fn close(mut self) {
        let _ = self.send.finish();
    }
}
