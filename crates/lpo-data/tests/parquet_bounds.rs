//! Parquet import is bounded: a file's codecs and row counts are checked in
//! its metadata before any row is read, and rows are read one at a time.
//!
//! The files are made here: the parquet writer writes an uncompressed file,
//! then its footer (the Thrift `FileMetaData`) is written again by the
//! parquet crate's own `ParquetMetaDataWriter`, with one field changed (a
//! column chunk's codec, a row group's row count) and the data pages left as
//! they are. This build of the parquet crate has no gzip or zstd codec (only
//! `snap`), so its writer cannot produce such pages; the importer must refuse
//! the file from its metadata alone, so pages that really are compressed
//! would not change what is tested. An identity rewrite reads back as the
//! original, so the rewriting itself changes nothing else.
//!
//! The test binary's allocator counts live bytes and refuses to go beyond
//! `CAP`: an importer that reads what it should refuse fails here by an
//! allocation failure in seconds instead of growing without bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lpo_data::import::{
    check_parquet_metadata, read_records, Format, ImportError, OnBad, MAX_PARQUET_ROWS,
};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

/// Live bytes this test binary may hold at once.
const CAP: usize = 512 << 20;

struct Capped;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`, only counting; a refused allocation returns
// null as `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        if live > CAP {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: the caller's layout, as `System` requires.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// One test at a time, so that the peak measured is the test's own.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`, returning its result and the most bytes it held at once beyond
/// what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(before))
}

/// Writes an uncompressed file of `rows` rows (`prompt`, `score`), the
/// prompt `prompt` in every row (dictionary-encoded, so a few bytes stand
/// for all of them).
fn write_file(path: &Path, rows: usize, prompt: &str) {
    let schema = "message schema { REQUIRED BINARY prompt (STRING); REQUIRED DOUBLE score; }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let prompts = vec![ByteArray::from(prompt); rows];
    col.typed::<ByteArrayType>()
        .write_batch(&prompts, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let scores: Vec<f64> = (0..rows).map(|i| i as f64).collect();
    col.typed::<DoubleType>()
        .write_batch(&scores, None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

fn metadata(path: &Path) -> ParquetMetaData {
    SerializedFileReader::new(File::open(path).unwrap())
        .unwrap()
        .metadata()
        .clone()
}

/// Writes `path`'s footer again with `edit` applied to its metadata; the
/// data pages before it stay byte for byte.
fn rewrite_footer(path: &Path, edit: impl FnOnce(ParquetMetaData) -> ParquetMetaData) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
    let len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - len as usize;
    let metadata = edit(metadata(path));
    let mut out = bytes[..data_end].to_vec();
    ParquetMetaDataWriter::new(&mut out, &metadata)
        .finish()
        .unwrap();
    std::fs::write(path, out).unwrap();
}

/// Sets row group 0's column `column` to `codec`.
fn with_codec(metadata: ParquetMetaData, column: usize, codec: Compression) -> ParquetMetaData {
    let mut builder = metadata.into_builder();
    let mut groups = builder.take_row_groups();
    let group = groups.remove(0);
    let mut columns = group.columns().to_vec();
    columns[column] = columns[column]
        .clone()
        .into_builder()
        .set_compression(codec)
        .build()
        .unwrap();
    groups.insert(
        0,
        group
            .into_builder()
            .set_column_metadata(columns)
            .build()
            .unwrap(),
    );
    builder.set_row_groups(groups).build()
}

/// Sets row group 0's row count (the file's total follows: the footer
/// writer sums the row groups).
fn with_rows(metadata: ParquetMetaData, rows: i64) -> ParquetMetaData {
    let mut builder = metadata.into_builder();
    let mut groups = builder.take_row_groups();
    let group = groups.remove(0);
    groups.insert(0, group.into_builder().set_num_rows(rows).build().unwrap());
    builder.set_row_groups(groups).build()
}

#[test]
fn the_footer_rewrite_alone_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.parquet");
    write_file(&path, 3, "p");
    rewrite_footer(&path, |m| m);
    let meta = metadata(&path);
    assert_eq!(meta.file_metadata().num_rows(), 3);
    assert_eq!(
        meta.row_group(0).column(1).compression(),
        Compression::UNCOMPRESSED
    );
    // The rows read as before: here they are bad native records, row 1 first.
    let e = read_records(&path, Format::Native, OnBad::Error)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{}: row 1: missing field `responses`", path.display())
    );
}

#[test]
fn gzip_and_zstd_columns_are_refused_from_the_metadata() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    for (codec, name) in [
        (Compression::GZIP(GzipLevel::default()), "GZIP"),
        (Compression::ZSTD(ZstdLevel::default()), "ZSTD"),
        (Compression::LZ4_RAW, "LZ4_RAW"),
    ] {
        let path = dir.path().join(format!("{name}.parquet"));
        write_file(&path, 2, "p");
        rewrite_footer(&path, |m| with_codec(m, 1, codec));
        assert_eq!(metadata(&path).row_group(0).column(1).compression(), codec);
        for on_bad in [OnBad::Error, OnBad::Skip] {
            let (result, peak) = peak_of(|| read_records(&path, Format::Native, on_bad));
            let err = result.unwrap_err();
            match &err {
                ImportError::UnsupportedCodec {
                    path: p,
                    codec: c,
                    column,
                } => assert_eq!(
                    (p.as_path(), *c, column.as_str()),
                    (path.as_path(), name, "score")
                ),
                other => panic!("{name}: expected UnsupportedCodec, got {other}"),
            }
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "{}: column `score` is {name}-compressed;",
                    path.display()
                )),
                "{message}"
            );
            assert!(peak < 4 << 20, "{name}: {peak} bytes held");
        }
    }
}

#[test]
fn a_row_group_claiming_2_pow_40_rows_is_refused_from_the_metadata() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.parquet");
    write_file(&path, 2, "p");
    rewrite_footer(&path, |m| with_rows(m, 1 << 40));
    assert_eq!(metadata(&path).file_metadata().num_rows(), 1 << 40);
    let (result, peak) = peak_of(|| read_records(&path, Format::Native, OnBad::Skip));
    let err = result.unwrap_err();
    assert!(matches!(err, ImportError::RowCount { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the metadata claims 1099511627776 rows; a parquet file may have 0 to {MAX_PARQUET_ROWS}",
            path.display()
        )
    );
    assert!(peak < 4 << 20, "{peak} bytes held");
}

#[test]
fn a_row_group_claiming_more_rows_than_its_columns_hold_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.parquet");
    write_file(&path, 2, "p");
    rewrite_footer(&path, |m| with_rows(m, 1_000_000));
    let (result, peak) = peak_of(|| read_records(&path, Format::Native, OnBad::Skip));
    let err = result.unwrap_err();
    assert!(matches!(err, ImportError::RowCount { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row group 0 claims 1000000 rows but its column `prompt` holds 2 values",
            path.display()
        )
    );
    assert!(peak < 4 << 20, "{peak} bytes held");
    // Just beyond the bound, and negative.
    for rows in [MAX_PARQUET_ROWS + 1, -1] {
        let path = dir.path().join(format!("rows{rows}.parquet"));
        write_file(&path, 2, "p");
        rewrite_footer(&path, |m| with_rows(m, rows));
        let err = read_records(&path, Format::Native, OnBad::Skip).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("claims {rows} rows; a parquet file may have 0 to")),
            "{err}"
        );
    }
}

#[test]
fn a_file_total_unlike_its_row_groups_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sum.parquet");
    write_file(&path, 2, "p");
    // The footer writer always writes the row groups' sum, so this metadata
    // is built and checked directly.
    let meta = metadata(&path);
    assert!(check_parquet_metadata(&path, &meta).is_ok());
    for total in [5, 1] {
        let file = meta.file_metadata();
        let claimed = FileMetaData::new(
            file.version(),
            total,
            file.created_by().map(str::to_string),
            file.key_value_metadata().cloned(),
            file.schema_descr_ptr(),
            file.column_orders().cloned(),
        );
        let lying = ParquetMetaData::new(claimed, meta.row_groups().to_vec());
        let err = check_parquet_metadata(&path, &lying).unwrap_err();
        let holds = if total < 2 { "at least 2" } else { "2" };
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the metadata claims {total} rows but its row groups hold {holds}",
                path.display()
            )
        );
    }
}

#[test]
fn rows_are_read_one_at_a_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.parquet");
    // 100,000 rows of a 1 KiB prompt: a small file (the dictionary holds the
    // prompt once), about 100 MiB as JSON values all at once.
    let rows = 100_000;
    write_file(&path, rows, &"x".repeat(1024));
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    // Row 1 is a bad native record (no `responses`): the import stops there.
    let (result, peak) = peak_of(|| read_records(&path, Format::Native, OnBad::Error));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!("{}: row 1: missing field `responses`", path.display())
    );
    assert!(peak < 8 << 20, "{peak} bytes held");
    // Skipping goes through every row, holding only the skip list.
    let (result, peak) = peak_of(|| read_records(&path, Format::Native, OnBad::Skip));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: no valid records ({rows} bad records skipped)",
            path.display()
        )
    );
    assert!(peak < 32 << 20, "{peak} bytes held");
}
