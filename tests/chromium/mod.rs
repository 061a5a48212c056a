//! Headless Chromium for tests that render a page: installs Debian's
//! `chromium` with apt-get when it is missing (as root, the way
//! `scripts/slurm-local.sh` installs slurm-wlm), takes a screenshot, and
//! decodes the PNG to check what was drawn.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(what: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Makes sure `chromium` is on the PATH, installing Debian's package with
/// apt-get when it is not (root only; otherwise the test fails saying what
/// to install).
pub fn ensure_installed() {
    if on_path("chromium") {
        return;
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert!(
        String::from_utf8_lossy(&uid.stdout).trim() == "0",
        "chromium is not installed and this is not root: install Debian's `chromium` package"
    );
    eprintln!("installing chromium with apt-get");
    let steps: [&[&str]; 2] = [
        &["600", "apt-get", "update", "-qq"],
        &[
            "900",
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ],
    ];
    for args in steps {
        let out = run("apt-get", args);
        assert!(
            out.status.success(),
            "`{}` failed, so chromium could not be installed (is a Debian mirror reachable?):\n{}{}",
            args[1..].join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(on_path("chromium"), "apt-get installed no `chromium`");
}

/// Screenshots `page` at 1280 x `height` px into `png` with headless
/// Chromium (its own profile under `profile`); returns Chromium's output.
pub fn screenshot(page: &Path, png: &Path, height: u32, profile: &Path) -> Output {
    let size = format!("--window-size=1280,{height}");
    let shot = format!("--screenshot={}", png.display());
    let url = format!("file://{}", page.display());
    let data = format!("--user-data-dir={}", profile.display());
    Command::new("timeout")
        .args([
            "180",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            &data,
            &size,
            &shot,
            &url,
        ])
        .output()
        .unwrap()
}

/// Lines of Chromium's log that report a page (console or JavaScript)
/// error: the page has no script, so any console message is one.
pub fn page_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// A decoded 8-bit RGB or RGBA PNG: width, height and pixels as RGB.
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[u8; 3]>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes a non-interlaced 8-bit RGB or RGBA PNG (what Chromium writes).
pub fn decode_png(bytes: &[u8]) -> Result<Image, String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err("not a PNG: wrong signature".into());
    }
    let (mut header, mut data, mut at) = (None, Vec::new(), SIGNATURE.len());
    while at + 8 <= bytes.len() {
        let len = be32(&bytes[at..]) as usize;
        let kind = &bytes[at + 4..at + 8];
        let body = bytes.get(at + 8..at + 8 + len).ok_or("truncated chunk")?;
        match kind {
            b"IHDR" => header = Some((be32(body), be32(&body[4..]), body[8], body[9], body[12])),
            b"IDAT" => data.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let (width, height, depth, color, interlace) = header.ok_or("no IHDR chunk")?;
    let channels = match (depth, color, interlace) {
        (8, 2, 0) => 3,
        (8, 6, 0) => 4,
        _ => {
            return Err(format!(
                "unsupported PNG: depth {depth}, colour type {color}"
            ))
        }
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&data[..])
        .read_to_end(&mut raw)
        .map_err(|e| format!("bad image data: {e}"))?;
    let rgb = unfilter(&raw, width as usize, height as usize, channels)?;
    Ok(Image { width, height, rgb })
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// Undoes the per-row filters and returns the pixels as RGB.
fn unfilter(raw: &[u8], w: usize, h: usize, ch: usize) -> Result<Vec<[u8; 3]>, String> {
    let stride = w * ch;
    if raw.len() != h * (stride + 1) {
        return Err(format!("{} bytes of pixels for {w} x {h}", raw.len()));
    }
    let mut prev = vec![0u8; stride];
    let mut out = Vec::with_capacity(w * h);
    for row in raw.chunks(stride + 1) {
        let (filter, src) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= ch { cur[i - ch] } else { 0 };
            let (b, c) = (prev[i], if i >= ch { prev[i - ch] } else { 0 });
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                f => return Err(format!("unknown row filter {f}")),
            };
            cur[i] = src[i].wrapping_add(pred);
        }
        out.extend(cur.chunks(ch).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    Ok(out)
}
