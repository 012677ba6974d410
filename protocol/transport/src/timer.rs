//! Precise timers on a timerfd, for quinn's connection timers (daemon and appliance) and the
//! appliance's input script's sleeps.
//!
//! Tokio's timer wheel has 1 ms slots and wakes early at slot boundaries to cascade timers
//! from its coarser levels, so a timer 20–60 ms out (a QUIC loss-detection timer, a script's
//! pause between keys) often costs two or three wake-ups instead of one. On the small CPUs an
//! appliance runs on, and on the shared VMs the benchmarks run on, each wake-up costs tens of
//! microseconds: while someone types, these were about 1.8 of the appliance's 6 wake-ups per
//! key. A timerfd fires once, at its deadline.
//!
//! Linux and illumos have timerfd; elsewhere this falls back to Tokio's timers.

use std::{io, pin::Pin, sync::Arc, time::Instant};

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};

/// Quinn's Tokio runtime, with connection timers on a timerfd where there is one.
#[derive(Debug)]
pub struct PreciseRuntime;

impl Runtime for PreciseRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        #[cfg(any(target_os = "linux", target_os = "illumos"))]
        match fd::FdTimer::new(deadline) {
            Ok(timer) => return Box::pin(timer),
            Err(err) => tracing::debug!(%err, "no timerfd; using Tokio's timer"),
        }
        TokioRuntime.new_timer(deadline)
    }

    fn spawn(&self, future: Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        TokioRuntime.spawn(future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(socket)
    }
}

/// Sleeps until `deadline`, on a timerfd where there is one.
pub async fn sleep_until(deadline: Instant) {
    #[cfg(any(target_os = "linux", target_os = "illumos"))]
    if let Ok(mut timer) = fd::FdTimer::new(deadline) {
        std::future::poll_fn(|cx| Pin::new(&mut timer).poll_expired(cx)).await;
        return;
    }
    tokio::time::sleep_until(deadline.into()).await
}

#[cfg(any(target_os = "linux", target_os = "illumos"))]
mod fd {
    use std::{
        io,
        os::fd::OwnedFd,
        pin::Pin,
        task::{ready, Context, Poll},
        time::{Duration, Instant},
    };

    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use tokio::io::{unix::AsyncFd, Interest};

    /// A one-shot timerfd on the monotonic clock (the one `Instant` reads), registered with
    /// the Tokio reactor.
    #[derive(Debug)]
    pub struct FdTimer {
        fd: AsyncFd<OwnedFd>,
        deadline: Instant,
        expired: bool,
    }

    impl FdTimer {
        pub fn new(deadline: Instant) -> io::Result<FdTimer> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // SAFETY: the timerfd is ours alone and lives exactly as long as the `AsyncFd`.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
            let mut timer = FdTimer {
                fd,
                deadline,
                expired: false,
            };
            timer.arm()?;
            Ok(timer)
        }

        /// Sets the timerfd to fire at the deadline; this also clears an expiry not yet read.
        fn arm(&mut self) -> io::Result<()> {
            // A zero value disarms a timerfd, so a deadline already past fires after 1 ns.
            let left = self
                .deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: left.subsec_nanos().into(),
                },
            };
            timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
            Ok(())
        }

        /// Ready once the deadline has passed, and from then on until the next reset.
        pub fn poll_expired(&mut self, cx: &mut Context) -> Poll<()> {
            loop {
                if self.expired {
                    return Poll::Ready(());
                }
                let mut guard = match ready!(self.fd.poll_read_ready(cx)) {
                    Ok(guard) => guard,
                    // The reactor is gone (shutting down): nothing waits for this timer.
                    Err(_) => return Poll::Ready(()),
                };
                let mut count = [0u8; 8];
                match rustix::io::read(guard.get_inner(), &mut count) {
                    Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                    // Any other error cannot happen for a timerfd we own; firing early is the
                    // safe answer there (quinn checks the clock itself).
                    _ => self.expired = true,
                }
            }
        }

        pub fn reset(&mut self, deadline: Instant) {
            self.deadline = deadline;
            self.expired = false;
            if let Err(err) = self.arm() {
                tracing::warn!(%err, "cannot re-arm a timerfd; firing it now");
                self.expired = true;
            }
        }
    }

    impl quinn::AsyncTimer for FdTimer {
        fn reset(self: Pin<&mut Self>, deadline: Instant) {
            self.get_mut().reset(deadline)
        }

        fn poll(self: Pin<&mut Self>, cx: &mut Context) -> Poll<()> {
            self.get_mut().poll_expired(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{task::Poll, time::Duration};

    use super::*;

    #[tokio::test]
    async fn sleeps_until_the_deadline_and_not_much_longer() {
        for ms in [0u64, 1, 7, 30] {
            let start = Instant::now();
            let deadline = start + Duration::from_millis(ms);
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline, "{ms} ms: woke {:?} early", deadline - now);
        }
        // A deadline already past returns at once.
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(5), sleep_until(past))
            .await
            .expect("a past deadline must not hang");
    }

    #[tokio::test]
    async fn quinn_timer_follows_resets() {
        let runtime = PreciseRuntime;
        let far = Instant::now() + Duration::from_secs(3600);
        let mut timer = runtime.new_timer(far);
        // Far away: pending.
        let pending = std::future::poll_fn(|cx| Poll::Ready(timer.as_mut().poll(cx))).await;
        assert!(pending.is_pending());
        // Moved close: fires, and stays expired until the next reset.
        let near = Instant::now() + Duration::from_millis(5);
        timer.as_mut().reset(near);
        std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
        assert!(Instant::now() >= near);
        let again = std::future::poll_fn(|cx| Poll::Ready(timer.as_mut().poll(cx))).await;
        assert!(again.is_ready());
        // Pushed out again: pending once more, even though it had expired.
        timer.as_mut().reset(far);
        let later = std::future::poll_fn(|cx| Poll::Ready(timer.as_mut().poll(cx))).await;
        assert!(later.is_pending());
    }
}
