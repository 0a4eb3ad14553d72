use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A message an [`SmtpSink`] accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A small SMTP server on loopback that keeps what it is sent: enough of RFC 5321
/// for lettre without TLS. Recipients listed in `refuse` get a permanent 550.
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<Received>>>,
}

impl SmtpSink {
    pub fn start(refuse: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let refuse: Vec<String> = refuse.iter().map(|r| r.to_string()).collect();
        let sink = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (sink, refuse) = (sink.clone(), refuse.clone());
                std::thread::spawn(move || {
                    let _ = session(stream, &sink, &refuse);
                });
            }
        });
        Self { port, messages }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }
}

fn session(
    stream: TcpStream,
    sink: &Mutex<Vec<Received>>,
    refuse: &[String],
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    reply("220 sink ESMTP")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            reply("250-sink\r\n250 8BITMIME")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_owned();
            to.clear();
            reply("250 ok")?;
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = command[8..].trim().trim_matches(['<', '>']).to_owned();
            if refuse.contains(&rcpt) {
                reply("550 5.1.1 no such mailbox")?;
            } else {
                to.push(rcpt);
                reply("250 ok")?;
            }
        } else if upper == "DATA" {
            reply("354 end with .")?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            sink.lock().unwrap().push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            reply("250 queued")?;
        } else if upper == "QUIT" {
            reply("221 bye")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            reply("250 ok")?;
        } else {
            reply("502 not implemented")?;
        }
    }
}
