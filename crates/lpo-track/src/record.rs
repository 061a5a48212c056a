//! TFRecord framing, the container of event files: each record is
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes
//! data (length bytes)        | u32 masked CRC-32C of the data
//! ```
//!
//! The CRC is masked (rotated and offset) because a CRC over data that
//! itself holds CRCs is weak; TensorFlow's `crc32c::Mask` does the same.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;

use crate::event::Event;

/// TensorFlow's mask of a CRC-32C stored in a record.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes `data` as one record.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    out.write_all(&length)?;
    out.write_all(&masked_crc(&length).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// The records of `bytes`, each CRC checked. A record cut short at the end
/// (a writer still writing, or killed) ends the list, as TensorBoard reads
/// it; a wrong CRC is an error.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let header = &bytes[at..at + 8];
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        ensure!(masked_crc(header) == crc, "bad length CRC at byte {at}");
        let length = u64::from_le_bytes(header.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|n| (at + 12).checked_add(n))
            .filter(|&end| end + 4 <= bytes.len())
        else {
            return Ok(records); // cut short
        };
        let data = &bytes[at + 12..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        ensure!(masked_crc(data) == crc, "bad data CRC at byte {at}");
        records.push(data);
        at = end + 4;
    }
    Ok(records)
}

/// The events of the file at `path`, every CRC checked.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let records = read_records(&bytes).with_context(|| format!("in {}", path.display()))?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            Event::decode(data).with_context(|| format!("event {i} of {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|events| {
            if events.first().and_then(|e| e.file_version.as_deref()) != Some("brain.Event:2") {
                bail!("{} does not begin with brain.Event:2", path.display());
            }
            Ok(events)
        })
}
