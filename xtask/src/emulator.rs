//! Starts, finds and stops MiniStack, the local AWS emulator, on a loopback port.
//!
//! The emulator runs in its own process group so that stopping it (by its recorded pid) also
//! ends the Lambda runtimes it spawned.

use crate::{paths, tools::Tools};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub port: u16,
    pub pid: u32,
}

impl Emulator {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The emulator already recorded for `port`, if it is alive and healthy.
    pub fn find(port: u16) -> Option<Emulator> {
        let pid: u32 = fs::read_to_string(pid_file(port))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (alive(pid) && healthy(port)).then_some(Emulator { port, pid })
    }

    /// Starts a new emulator on `port` and waits until it answers its health check.
    pub fn start(tools: &Tools, port: u16) -> Result<Emulator> {
        if healthy(port) {
            bail!(
                "something already answers on 127.0.0.1:{port} that this checkout did not start; \
                 stop it or choose another port with --port"
            );
        }
        let dir = paths::local();
        fs::create_dir_all(&dir)?;
        let log = fs::File::create(log_file(port))?;
        let state = dir.join(format!("ministack-{port}"));
        fs::create_dir_all(&state)?;
        let shim = crate::emulator_gaps::install_shim(&state)?;
        let child = tools
            .command("ministack")
            .env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            // What the emulator hands its Lambda runtimes as their endpoint: without it,
            // functions calling AWS (the controller) would look for the real AWS.
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            // Its Lambda code cache is keyed by port only; keep it inside the checkout.
            .env("TMPDIR", &state)
            // The emulator-gap patches (emulator_gaps/ministack_shim), loaded at start-up.
            .env("PYTHONPATH", &shim)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting ministack")?;
        let emulator = Emulator {
            port,
            pid: child.id(),
        };
        fs::write(pid_file(port), emulator.pid.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(port) {
            if !alive(emulator.pid) {
                let _ = fs::remove_file(pid_file(port));
                bail!(
                    "ministack exited during start; see {}",
                    log_file(port).display()
                );
            }
            if Instant::now() > deadline {
                emulator.stop();
                bail!(
                    "ministack did not become healthy within 60s; see {}",
                    log_file(port).display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(emulator)
    }

    /// Stops the emulator and everything it spawned; waits until the process is gone.
    pub fn stop(&self) {
        let group = format!("-{}", self.pid);
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(self.pid) {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = fs::remove_file(pid_file(self.port));
        // The emulator keeps its state in memory; only unpacked Lambda code is left here.
        let _ = fs::remove_dir_all(paths::local().join(format!("ministack-{}", self.port)));
    }
}

pub fn pid_file(port: u16) -> PathBuf {
    paths::local().join(format!("ministack-{port}.pid"))
}

pub fn log_file(port: u16) -> PathBuf {
    paths::local().join(format!("ministack-{port}.log"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only count running states.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// True when the emulator's health route answers 200 on `port`.
pub fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /_ministack/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    match stream.read(&mut head) {
        Ok(n) => head[..n].starts_with(b"HTTP/1.1 200"),
        Err(_) => false,
    }
}
