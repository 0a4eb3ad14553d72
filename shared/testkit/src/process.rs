use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait_until;

/// A child process whose standard output and error are collected line by line.
pub struct Proc {
    pub name: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    listening: Option<mpsc::Receiver<SocketAddr>>,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts `command`. It receives SIGTERM if the test's thread ends first.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        collect(stderr, logs.clone(), Some(tx));
        collect(stdout, logs.clone(), None);
        Self {
            name: name.to_owned(),
            child,
            logs,
            listening: Some(rx),
            exit: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the "listening on http://ADDR" line of a service.
    pub fn wait_listening(&mut self, timeout: Duration) -> SocketAddr {
        let rx = self
            .listening
            .take()
            .expect("wait_listening is called once");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                return addr;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name,
                    self.logs()
                );
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "{} did not start listening within {timeout:?}:\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
    }

    /// Everything the process wrote to standard error so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.try_exit().is_some());
        let status = self.try_exit();
        if status.is_some() {
            // Let the reader thread take the last lines.
            wait_until(Duration::from_secs(1), || {
                Arc::strong_count(&self.logs) == 1
            });
        }
        status
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_exit().is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(grace).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                return None;
            }
        }
        self.try_exit()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    listening: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(addr)) = (&listening, listening_addr(&line)) {
                let _ = tx.send(addr);
            }
            sink.lock().unwrap().push(line);
        }
    });
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Sends `signal` to every process of the group `pgid`, as a terminal does on Ctrl-C.
pub fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}
