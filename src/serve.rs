//! `boxwalk serve`: a local page where a user drops an image and sees the detections, the
//! classifier's top-5 and a threshold slider.
//!
//! - Loopback by default; one page and two API routes, all compiled in: no path from a request
//!   ever reaches the file system.
//! - Safe on loopback: a request whose `Host` is not the bound address, `localhost` or a name
//!   given with `--allow-host` is refused (DNS rebinding), as is one whose `Origin` is another
//!   site (a drive-by POST from a page elsewhere), with 403.
//! - Uploads are capped (`--max-upload`), decoded by content (anything but an image is refused
//!   with 415) and held to the same pixel limit as `detect`.
//! - The models are loaded once and owned by one inference thread; HTTP workers decode and
//!   prepare, then queue their inputs to it, and it runs whatever has queued up as one batch.

use crate::decode::{self, Limits};
use crate::engine::{self, infer::BoxContext, Models, Settings};
use crate::error::ImageError;
use crate::models::boxes::DecodeParams;
use crate::outputs::report::{Class, Detection};
use crate::preprocess;
use crossbeam_channel::{bounded, Receiver, Sender};
use image::RgbImage;
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Tensor};
use tiny_http::{Header, Method, Request, Response, Server};

const PAGE: &str = include_str!("serve/index.html");
/// Detections returned to the page: everything the decoder keeps (score > 0.05); the slider
/// filters them in the browser.
const RETURN_ABOVE: f32 = 0.0;
/// Most requests the inference thread runs as one batch.
const MAX_BATCH: usize = 16;

/// What `serve` needs.
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Names besides the bound address and `localhost` that requests may give as `Host`.
    pub allow_hosts: Vec<String>,
    pub max_upload: u64,
    pub limits: Limits,
    pub device: Device,
    pub workers: usize,
    /// True when the models are the offline demo ones (the page says so).
    pub demo: bool,
}

/// The answer to one upload.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub width: u32,
    pub height: u32,
    /// Score > 0.05, highest first, boxes in original pixels.
    pub detections: Vec<Detection>,
    pub classification: Vec<Class>,
    pub demo: bool,
    pub elapsed_ms: f64,
}

/// The models' answer for one job: detections and top-5, or why the batch failed.
type Reply = Result<(Vec<Detection>, Vec<Class>), String>;

struct Job {
    det: Tensor,
    cls: Tensor,
    rgb: RgbImage,
    reply: Sender<Reply>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {host}:{port}: {reason}")]
    Listen { host: String, port: u16, reason: String },
}

/// The inference thread: owns the models, runs queued jobs in batches through the engine until
/// every sender is gone.
fn inference_loop(models: Models, device: Device, jobs: Receiver<Job>) {
    let settings = Settings {
        decode: DecodeParams::default(),
        threshold: RETURN_ABOVE,
        keep_all_detections: false,
        top_k: 5,
        classify_crops: false,
        crop_batch: MAX_BATCH,
        device,
    };
    let boxes = BoxContext::new(&models);
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let inputs: Vec<engine::Input> = batch
            .iter()
            .map(|j| engine::Input { detector: Some(&j.det), classifier: Some(&j.cls), rgb: &j.rgb })
            .collect();
        let results = engine::infer(&inputs, &settings, &models);
        for (job, result) in batch.iter().zip(results) {
            let reply = result.map(|mut per| {
                if let Some(b) = &boxes {
                    b.finish(&mut per, job.rgb.width(), job.rgb.height(), &settings);
                }
                (per.detections.unwrap_or_default(), per.classification.unwrap_or_default())
            });
            let _ = job.reply.send(reply.map_err(|_| "the models failed on this batch".to_string()));
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn respond(req: Request, status: u16, content_type: &str, body: Vec<u8>) {
    let resp = Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob: data:; \
             connect-src 'self'",
        ));
    let _ = req.respond(resp);
}

fn json_error(req: Request, status: u16, message: &str) {
    respond(req, status, "application/json", serde_json::json!({ "error": message }).to_string().into_bytes());
}

/// Reads at most `max` bytes of the body; `Err(true)` when it is larger.
fn read_body(req: &mut Request, max: u64) -> Result<Vec<u8>, bool> {
    if req.body_length().is_some_and(|n| n as u64 > max) {
        return Err(true);
    }
    let mut body = Vec::new();
    req.as_reader().take(max.saturating_add(1)).read_to_end(&mut body).map_err(|_| false)?;
    if body.len() as u64 > max {
        return Err(true);
    }
    Ok(body)
}

fn detect(mut req: Request, opts: &ServeOptions, jobs: &Sender<Job>) {
    let t0 = Instant::now();
    let body = match read_body(&mut req, opts.max_upload) {
        Ok(b) => b,
        Err(true) => return json_error(req, 413, &format!("the upload is over the {} byte limit", opts.max_upload)),
        Err(false) => return json_error(req, 400, "the upload could not be read"),
    };
    let decoded = match decode::decode_bytes(&body, Path::new("upload"), &opts.limits) {
        Ok(d) => d,
        Err(ImageError::UnknownFormat { .. }) => {
            return json_error(req, 415, "not an image (JPEG, PNG, GIF, WebP, BMP, TIFF, … are accepted)")
        }
        Err(e @ ImageError::Limit { .. }) => return json_error(req, 413, &e.to_string()),
        Err(e) => return json_error(req, 422, &e.to_string()),
    };
    let (width, height) = decoded.rgb.dimensions();
    let (Some(det), Some(cls)) = preprocess::image_inputs(&decoded.rgb, opts.device, true, true) else {
        return json_error(req, 500, "preprocessing failed");
    };
    let (reply, answer) = bounded(1);
    if jobs.send(Job { det, cls, rgb: decoded.rgb, reply }).is_err() {
        return json_error(req, 503, "the server is stopping");
    }
    match answer.recv() {
        Ok(Ok((detections, classification))) => {
            let a = Answer {
                width,
                height,
                detections,
                classification,
                demo: opts.demo,
                elapsed_ms: t0.elapsed().as_secs_f64() * 1000.0,
            };
            match serde_json::to_vec(&a) {
                Ok(body) => respond(req, 200, "application/json", body),
                Err(e) => json_error(req, 500, &format!("cannot write the answer: {e}")),
            }
        }
        Ok(Err(e)) => json_error(req, 500, &e),
        Err(_) => json_error(req, 503, "the server is stopping"),
    }
}

/// The `host:port` forms a request may name this server by.
struct Allowed {
    hosts: Vec<String>,
}

impl Allowed {
    fn new(addr: std::net::SocketAddr, opts: &ServeOptions) -> Allowed {
        let port = addr.port();
        let ip = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let names = ["localhost".to_string(), "127.0.0.1".into(), "[::1]".into(), ip, opts.host.clone()];
        let mut hosts: Vec<String> = names.iter().chain(&opts.allow_hosts).map(|n| format!("{n}:{port}")).collect();
        if port == 80 {
            hosts.extend(names.iter().chain(&opts.allow_hosts).cloned());
        }
        hosts.iter_mut().for_each(|h| h.make_ascii_lowercase());
        Allowed { hosts }
    }

    /// Why `req` is refused, if it is: a `Host` this server is not, or an `Origin` of another site.
    fn refusal(&self, req: &Request) -> Option<&'static str> {
        let value = |name: &'static str| {
            req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_ascii_lowercase())
        };
        match value("Host") {
            Some(host) if self.hosts.contains(&host) => {}
            _ => return Some("the Host header names another server (serve --allow-host NAME allows a name)"),
        }
        match value("Origin") {
            Some(origin) if !origin.strip_prefix("http://").is_some_and(|o| self.hosts.iter().any(|h| h == o)) => {
                Some("requests from pages of another origin are refused")
            }
            _ => None,
        }
    }
}

fn handle(req: Request, opts: &ServeOptions, allowed: &Allowed, jobs: &Sender<Job>) {
    if let Some(why) = allowed.refusal(&req) {
        return json_error(req, 403, why);
    }
    let path = req.url().split('?').next().unwrap_or("").to_string();
    match (req.method(), path.as_str()) {
        (Method::Get, "/") | (Method::Get, "/index.html") => {
            respond(req, 200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec())
        }
        (Method::Get, "/api/info") => {
            let info = serde_json::json!({ "demo": opts.demo, "max_upload": opts.max_upload });
            respond(req, 200, "application/json", info.to_string().into_bytes())
        }
        (Method::Post, "/api/detect") => detect(req, opts, jobs),
        (_, "/" | "/index.html" | "/api/info" | "/api/detect") => json_error(req, 405, "method not allowed"),
        _ => json_error(req, 404, "not found"),
    }
}

/// Binds, prints the address on stdout, and serves until the process is stopped.
pub fn serve(opts: ServeOptions, models: Models) -> Result<(), ServeError> {
    let listen_error = |reason: String| ServeError::Listen { host: opts.host.clone(), port: opts.port, reason };
    let server = Server::http((opts.host.as_str(), opts.port)).map_err(|e| listen_error(e.to_string()))?;
    let addr = server.server_addr().to_ip().ok_or_else(|| listen_error("not an IP listener".into()))?;
    println!("boxwalk: serving on http://{addr}/ (Ctrl-C to stop)");
    if !addr.ip().is_loopback() {
        eprintln!(
            "boxwalk: warning: listening on {addr}, reachable from other machines; requests must name it by this \
             address, localhost or a name given with --allow-host"
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (tx, rx) = bounded::<Job>(4 * MAX_BATCH);
    let device = opts.device;
    let inference = std::thread::spawn(move || inference_loop(models, device, rx));
    let server = Arc::new(server);
    let allowed = Arc::new(Allowed::new(addr, &opts));
    let opts = Arc::new(opts);
    let workers: Vec<_> = (0..opts.workers.max(1))
        .map(|_| {
            let (server, opts, allowed, tx) = (server.clone(), opts.clone(), allowed.clone(), tx.clone());
            std::thread::spawn(move || {
                while let Ok(req) = server.recv() {
                    handle(req, &opts, &allowed, &tx);
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
    let _ = inference.join();
    Ok(())
}
