//! The client's two threads. The I/O thread owns the socket: it waits on it, on the
//! application (a waker) and on the engine's next deadline at once, and runs the engine.
//! The delivery thread runs the application's callbacks — events, the token refresh handler,
//! a subscription's `fulfilled` result — so none runs on the caller's thread or holds the
//! engine while it runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;
use mio::{Events, Poll, Token};

use super::engine::{Due, MANUAL_DISCONNECT, SyncEngine};
use super::events::ClientEvent;
use super::transport::{Incoming, Socket};
use super::{Shared, now_ms};
use crate::sync::protocol::Outgoing;

pub(super) const WAKER: Token = Token(0);
const SOCKET: Token = Token(1);
/// The longest the I/O thread sleeps without a deadline (a safety net; the waker is the rule).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// Work for the delivery thread.
pub(super) enum Job {
    Events(Vec<ClientEvent>),
    RefreshToken,
    Stop,
}

/// The I/O thread's loop; returns once the client is closing.
pub(super) fn run_io(shared: Arc<Shared>, mut poll: Poll) {
    let mut events = Events::with_capacity(16);
    let mut socket: Option<Socket> = None;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            if let Some(socket) = socket.as_mut() {
                socket.close(1000, MANUAL_DISCONNECT.into());
            }
            return;
        }
        let now = now_ms();
        let (output, due) = shared.with_engine(|engine| (engine.take_output(), engine.tick(now)));
        for due in due {
            match due {
                Due::RefreshToken => shared.post(Job::RefreshToken),
            }
        }
        send_all(&shared, &poll, &mut socket, output);
        if socket.is_none()
            && let Some(url) = shared.with_engine(|engine| engine.dial(now))
        {
            match Socket::dial(&url, &shared.trust) {
                Ok(mut opened) => match opened.register(poll.registry(), SOCKET) {
                    Ok(()) if shared.with_engine(|engine| engine.opened(now_ms())) => {
                        *shared.last_error.lock() = None;
                        socket = Some(opened);
                        // The upgrade's reply may have carried the first frames already.
                        read(&shared, &poll, &mut socket);
                    }
                    // Disconnected while it opened.
                    Ok(()) => {
                        opened.close(1000, MANUAL_DISCONNECT.into());
                        opened.deregister(poll.registry());
                    }
                    Err(error) => dial_failed(&shared, &error),
                },
                Err(error) => dial_failed(&shared, &error),
            }
            continue;
        }
        let timeout = shared.with_engine(|engine| engine.next_deadline()).map_or(IDLE_WAIT, |at| {
            Duration::from_millis((at - now_ms()).clamp(0, IDLE_WAIT.as_millis() as i64) as u64)
        });
        // An output queued between taking it and now has woken the waker: the poll returns at once.
        if let Err(error) = poll.poll(&mut events, Some(timeout))
            && error.kind() != std::io::ErrorKind::Interrupted
        {
            tracing::error!(%error, "the sync client's poll failed; the client stops syncing");
            return;
        }
        let socket_ready = events.iter().any(|event| event.token() == SOCKET);
        if socket_ready && let Some(open) = socket.as_mut() {
            if let Err(error) = open.flush() {
                lost(&shared, &poll, &mut socket, &error);
                continue;
            }
            read(&shared, &poll, &mut socket);
        }
    }
}

fn dial_failed(shared: &Shared, error: &dyn std::fmt::Display) {
    tracing::debug!(%error, "the sync client could not connect");
    *shared.last_error.lock() = Some(error.to_string());
    shared.with_engine(|engine| engine.closed(None, now_ms()));
}

fn lost(shared: &Shared, poll: &Poll, socket: &mut Option<Socket>, error: &dyn std::fmt::Display) {
    tracing::debug!(%error, "the sync connection was lost");
    *shared.last_error.lock() = Some(error.to_string());
    if let Some(gone) = socket.take() {
        gone.deregister(poll.registry());
    }
    shared.with_engine(|engine| engine.closed(None, now_ms()));
}

fn send_all(shared: &Shared, poll: &Poll, socket: &mut Option<Socket>, output: Vec<Outgoing>) {
    for outgoing in output {
        let Some(open) = socket.as_mut() else { return };
        match outgoing {
            Outgoing::Text(frame) => {
                if let Err(error) = open.send(frame) {
                    return lost(shared, poll, socket, &error);
                }
            }
            Outgoing::Close { code, reason } => {
                open.close(code, reason);
                if let Some(closed) = socket.take() {
                    closed.deregister(poll.registry());
                }
            }
        }
    }
}

/// Feeds every frame available to the engine (under one lock); a close ends the socket.
fn read(shared: &Shared, poll: &Poll, socket: &mut Option<Socket>) {
    let Some(open) = socket.as_mut() else { return };
    let mut incoming = Vec::new();
    open.read_available(|frame| incoming.push(frame));
    if incoming.is_empty() {
        return;
    }
    let mut closed = false;
    shared.with_engine(|engine: &mut SyncEngine| {
        let now = now_ms();
        for frame in incoming {
            match frame {
                Incoming::Text(text) => {
                    if let Err(error) = engine.received(&text, now) {
                        tracing::error!(%error, "the sync client could not apply a message from the server");
                    }
                }
                Incoming::Closed(reason) => {
                    engine.closed(reason.as_deref(), now);
                    closed = true;
                }
            }
        }
    });
    if closed && let Some(gone) = socket.take() {
        gone.deregister(poll.registry());
    }
}

/// The delivery thread's loop.
pub(super) fn run_delivery(shared: Arc<Shared>, jobs: Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Stop => return,
            Job::Events(events) => {
                for event in &events {
                    if let ClientEvent::QueryFulfilled { query_id } = event {
                        shared.fulfil_subscriptions(query_id);
                    }
                    let mut listeners = shared.listeners.lock();
                    for listener in listeners.iter_mut() {
                        listener(event);
                    }
                }
            }
            Job::RefreshToken => shared.refresh_token(),
        }
    }
}
