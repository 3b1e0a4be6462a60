//! Tables to train and score on: any CSV (optionally gzipped) or Parquet file, read into
//! columns of `f64` (NaN = missing) or of category strings, plus the `row,set` split files
//! of the shared datasets.
//!
//! A CSV column is numeric when every non-empty value parses as a number, unless it is named
//! as categorical; Parquet columns keep their type (numbers and booleans are numeric, strings
//! and dates categorical). Reading everything as text first means a column is never typed by
//! its first thousand rows only.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::ModelError;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; NaN marks a missing value.
    Num(Vec<f64>),
    /// Category labels; `None` marks a missing value.
    Cat(Vec<Option<String>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Num(v) => v.len(),
            Column::Cat(v) => v.len(),
        }
    }
}

/// A table held in memory by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    names: Vec<String>,
    columns: Vec<Column>,
    rows: usize,
    coerced: Vec<Coerced>,
}

/// A CSV column read as numbers although a few of its values are not numbers: those
/// values are missing. Said on the console and kept in the model file, never silent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coerced {
    /// The column.
    pub column: String,
    /// Values that are not numbers, read as missing.
    pub values: u64,
    /// Up to three of them, as written.
    pub examples: Vec<String>,
}

/// At most this share of a column's values (one in a hundred) may fail to parse for it to
/// be read as numbers; with more, it is a column of categories.
const MAX_NOT_NUMBERS: f64 = 0.01;

/// Words that mean "no value" in a CSV cell.
const NA: [&str; 6] = ["", "NA", "NaN", "nan", "null", "NULL"];

impl Frame {
    /// Builds a frame from named columns of equal length.
    pub fn new(named: Vec<(String, Column)>) -> Result<Frame, ModelError> {
        let rows = named.first().map_or(0, |(_, c)| c.len());
        let mut seen = HashSet::new();
        for (name, col) in &named {
            if col.len() != rows {
                return Err(ModelError::Data(format!(
                    "column {name} has {} rows, expected {rows}",
                    col.len()
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(ModelError::Data(format!("column {name} appears twice")));
            }
        }
        let (names, columns) = named.into_iter().unzip();
        Ok(Frame {
            names,
            columns,
            rows,
            coerced: Vec::new(),
        })
    }

    /// The CSV columns read as numbers despite a few values that are not numbers.
    pub fn coerced(&self) -> &[Coerced] {
        &self.coerced
    }

    /// Reads a `.csv`, `.csv.gz` or `.parquet` file. Columns named in `categorical` are read
    /// as categories even when their values look numeric.
    pub fn read(path: &Path, categorical: &[String]) -> Result<Frame, ModelError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
        let frame = if name.ends_with(".parquet") {
            read_parquet(path, categorical)?
        } else if name.ends_with(".csv.gz") {
            let file = File::open(path).map_err(io)?;
            read_csv(
                BufReader::new(flate2::read::GzDecoder::new(file)),
                categorical,
            )?
        } else if name.ends_with(".csv") {
            read_csv(BufReader::new(File::open(path).map_err(io)?), categorical)?
        } else {
            return Err(ModelError::Data(format!(
                "{}: unknown table format (expected .csv, .csv.gz or .parquet)",
                path.display()
            )));
        };
        for c in categorical {
            if frame.index(c).is_none() {
                return Err(ModelError::Data(format!(
                    "categorical column {c} is not in {}",
                    path.display()
                )));
            }
        }
        Ok(frame)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Column names in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Position of a column.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.index(name).map(|i| &self.columns[i])
    }

    /// Row `i`'s numeric columns by name (`None` where missing), e.g. a profile's
    /// characteristics for a decision.
    pub fn numeric_row(&self, i: usize) -> std::collections::BTreeMap<String, Option<f64>> {
        self.names
            .iter()
            .zip(&self.columns)
            .filter_map(|(n, c)| match c {
                Column::Num(v) => v.get(i).map(|&x| (n.clone(), (!x.is_nan()).then_some(x))),
                Column::Cat(_) => None,
            })
            .collect()
    }

    /// The binary target: 1 = bad (event), 0 = good; `None` where missing.
    pub fn target(&self, name: &str) -> Result<Vec<Option<bool>>, ModelError> {
        let bad = |v: &str| {
            ModelError::Data(format!(
                "target {name} has the value {v:?}; expected 0 or 1 (1 = bad)"
            ))
        };
        match self.column(name) {
            None => Err(ModelError::Data(format!(
                "target column {name} is not in the table"
            ))),
            Some(Column::Num(v)) => v
                .iter()
                .map(|&x| match x {
                    x if x.is_nan() => Ok(None),
                    0.0 => Ok(Some(false)),
                    1.0 => Ok(Some(true)),
                    x => Err(bad(&x.to_string())),
                })
                .collect(),
            Some(Column::Cat(v)) => v
                .iter()
                .map(|x| match x.as_deref() {
                    None => Ok(None),
                    Some("0" | "false") => Ok(Some(false)),
                    Some("1" | "true") => Ok(Some(true)),
                    Some(x) => Err(bad(x)),
                })
                .collect(),
        }
    }
}

fn read_csv<R: Read>(reader: BufReader<R>, categorical: &[String]) -> Result<Frame, ModelError> {
    let mut reader = reader;
    let mut header = String::new();
    reader
        .read_line(&mut header)
        .map_err(|e| ModelError::Io("csv header".into(), e))?;
    let names: Vec<String> = split_header(header.trim_end_matches(['\n', '\r']));
    if names.is_empty() || names.iter().all(String::is_empty) {
        return Err(ModelError::Data("the CSV file has no header row".into()));
    }
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let csv = arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_batch_size(64 * 1024)
        .build(reader)
        .map_err(|e| ModelError::Data(format!("CSV: {e}")))?;
    let mut text: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
    for batch in csv {
        let batch = batch.map_err(|e| ModelError::Data(format!("CSV: {e}")))?;
        for (i, col) in batch.columns().iter().enumerate() {
            let col = col.as_string::<i32>();
            text[i].extend(col.iter().map(|v| {
                v.map(str::trim)
                    .filter(|v| !NA.contains(v))
                    .map(str::to_owned)
            }));
        }
    }
    let mut coerced = Vec::new();
    let named = names
        .into_iter()
        .zip(text)
        .map(|(name, values)| {
            let col = if categorical.contains(&name) {
                Column::Cat(values)
            } else {
                match parse_numbers(&values) {
                    Some((col, None)) => col,
                    Some((col, Some((n, examples)))) => {
                        coerced.push(Coerced {
                            column: name.clone(),
                            values: n,
                            examples,
                        });
                        col
                    }
                    None => Column::Cat(values),
                }
            };
            (name, col)
        })
        .collect();
    let mut frame = Frame::new(named)?;
    frame.coerced = coerced;
    Ok(frame)
}

/// Splits a CSV header line, honouring double quotes.
fn split_header(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for ch in line.trim_start_matches('\u{feff}').chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

/// Values that are not numbers, and up to three of them.
type NotNumbers = (u64, Vec<String>);

/// A column's text as numbers, if all of it parses or all but a few values
/// ([`MAX_NOT_NUMBERS`]), which are then missing and returned. Infinities (`inf`,
/// `-inf`, `infinity` in any case) are missing values, as they are in Parquet files.
fn parse_numbers(values: &[Option<String>]) -> Option<(Column, Option<NotNumbers>)> {
    let mut out = Vec::with_capacity(values.len());
    let (mut present, mut bad) = (0u64, 0u64);
    let mut examples: Vec<String> = Vec::new();
    for v in values {
        out.push(match v {
            None => f64::NAN,
            Some(s) => {
                present += 1;
                match s.parse::<f64>() {
                    Ok(x) if x.is_finite() => x,
                    Ok(_) => f64::NAN,
                    Err(_) => {
                        bad += 1;
                        if examples.len() < 3 && !examples.contains(s) {
                            examples.push(s.clone());
                        }
                        f64::NAN
                    }
                }
            }
        });
    }
    if bad == 0 {
        return Some((Column::Num(out), None));
    }
    let parsed = present - bad;
    (parsed > 0 && bad as f64 <= MAX_NOT_NUMBERS * present as f64)
        .then_some((Column::Num(out), Some((bad, examples))))
}

fn read_parquet(path: &Path, categorical: &[String]) -> Result<Frame, ModelError> {
    let file = File::open(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    let pq =
        |e: parquet::errors::ParquetError| ModelError::Data(format!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(pq)?;
    let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    let mut cols: Vec<(String, Column)> = schema
        .fields()
        .iter()
        .map(|f| {
            let numeric = !categorical.contains(f.name())
                && (f.data_type().is_numeric() || f.data_type() == &DataType::Boolean);
            let col = if numeric {
                Column::Num(Vec::new())
            } else {
                Column::Cat(Vec::new())
            };
            (f.name().clone(), col)
        })
        .collect();
    for batch in reader {
        let batch: RecordBatch =
            batch.map_err(|e| ModelError::Data(format!("{}: {e}", path.display())))?;
        for ((name, col), array) in cols.iter_mut().zip(batch.columns()) {
            append(col, array).map_err(|e| ModelError::Data(format!("column {name}: {e}")))?;
        }
    }
    Frame::new(cols)
}

fn append(col: &mut Column, array: &ArrayRef) -> Result<(), arrow::error::ArrowError> {
    match col {
        Column::Num(out) => {
            let a = cast(array, &DataType::Float64)?;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            // Infinities are missing, as in CSV files.
            out.extend((0..a.len()).map(|i| {
                let x = a.value(i);
                if a.is_null(i) || !x.is_finite() {
                    f64::NAN
                } else {
                    x
                }
            }));
        }
        Column::Cat(out) => {
            let a = cast(array, &DataType::Utf8)?;
            out.extend(a.as_string::<i32>().iter().map(|v| v.map(str::to_owned)));
        }
    }
    Ok(())
}

/// Which rows train and which test, from a `row,set` file (`row` 0-based, `set` = `train`
/// or `test`). Rows the file does not name are in neither set.
pub fn read_split(path: &Path, rows: usize) -> Result<Vec<Option<Set>>, ModelError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    let mut out = vec![None; rows];
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == "row,set" => {}
        _ => {
            return Err(ModelError::Data(format!(
                "{}: the split file must start with the header row,set",
                path.display()
            )))
        }
    }
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| {
            ModelError::Data(format!(
                "{} line {}: {why}: {line:?}",
                path.display(),
                n + 1
            ))
        };
        let (row, set) = line
            .split_once(',')
            .ok_or_else(|| bad("expected row,set"))?;
        let row: usize = row.trim().parse().map_err(|_| bad("row is not a number"))?;
        let set = match set.trim() {
            "train" => Set::Train,
            "test" => Set::Test,
            _ => return Err(bad("set must be train or test")),
        };
        let slot = out
            .get_mut(row)
            .ok_or_else(|| bad(&format!("row is past the table's {rows} rows")))?;
        if slot.is_some() {
            return Err(bad("row named twice"));
        }
        *slot = Some(set);
    }
    Ok(out)
}

/// The part of the data a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Used to fit.
    Train,
    /// Held out for evaluation only.
    Test,
}

/// The split named by a table's own `split` column (as written by `yuanxin profile
/// --oot-from`), if it has one.
pub fn split_column(frame: &Frame) -> Option<Vec<Option<Set>>> {
    match frame.column("split")? {
        Column::Cat(v) => Some(
            v.iter()
                .map(|s| match s.as_deref() {
                    Some("train") => Some(Set::Train),
                    Some("test") => Some(Set::Test),
                    _ => None,
                })
                .collect(),
        ),
        Column::Num(_) => None,
    }
}

/// A column to write.
#[derive(Debug, Clone, PartialEq)]
pub enum OutColumn {
    /// Text.
    Str(Vec<Option<String>>),
    /// Whole numbers.
    Int(Vec<Option<i64>>),
    /// Real numbers.
    Float(Vec<Option<f64>>),
}

/// Writes named columns as `.csv` or `.parquet` (by extension), atomically.
pub fn write_table(path: &Path, columns: Vec<(String, OutColumn)>) -> Result<(), ModelError> {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !(name.ends_with(".parquet") || name.ends_with(".csv")) {
        return Err(ModelError::Data(format!(
            "{}: write .csv or .parquet",
            path.display()
        )));
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| {
            let t = match c {
                OutColumn::Str(_) => DataType::Utf8,
                OutColumn::Int(_) => DataType::Int64,
                OutColumn::Float(_) => DataType::Float64,
            };
            Field::new(n, t, true)
        })
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|(_, c)| -> ArrayRef {
            match c {
                OutColumn::Str(v) => Arc::new(StringArray::from(v)),
                OutColumn::Int(v) => Arc::new(Int64Array::from(v)),
                OutColumn::Float(v) => Arc::new(Float64Array::from(v)),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| ModelError::Data(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let file = File::create(&tmp).map_err(io)?;
    if name.ends_with(".parquet") {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::default(),
            ))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(|e| ModelError::Data(e.to_string()))?;
        w.write(&batch)
            .map_err(|e| ModelError::Data(e.to_string()))?;
        w.close().map_err(|e| ModelError::Data(e.to_string()))?;
    } else {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(std::io::BufWriter::new(file));
        w.write(&batch)
            .map_err(|e| ModelError::Data(e.to_string()))?;
        std::io::Write::flush(&mut w.into_inner()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_types_columns_by_all_values_and_honours_categorical() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "a,\"b\",c,y\n1,x,3,0\n,y,NA,1\n2.5,x,4,\n").unwrap();
        let f = Frame::read(&p, &["c".to_owned()]).unwrap();
        assert_eq!(f.rows(), 3);
        match f.column("a").unwrap() {
            Column::Num(v) => {
                assert_eq!(v[0], 1.0);
                assert!(v[1].is_nan());
                assert_eq!(v[2], 2.5);
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(f.column("b"), Some(Column::Cat(_))));
        assert_eq!(
            f.column("c"),
            Some(&Column::Cat(vec![Some("3".into()), None, Some("4".into())]))
        );
        assert_eq!(f.target("y").unwrap(), vec![Some(false), Some(true), None]);
        assert!(f.target("b").is_err());
    }

    #[test]
    fn a_few_values_that_are_not_numbers_are_missing_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let mut text = String::from("a,b\n");
        for i in 0..200 {
            let a = match i {
                7 => "n/a".to_owned(),
                8 => "inf".to_owned(),
                9 => "-Infinity".to_owned(),
                _ => i.to_string(),
            };
            // b: every tenth value is text: a column of categories.
            let b = if i % 10 == 0 {
                "x".to_owned()
            } else {
                i.to_string()
            };
            text.push_str(&format!("{a},{b}\n"));
        }
        std::fs::write(&p, text).unwrap();
        let f = Frame::read(&p, &[]).unwrap();
        match f.column("a").unwrap() {
            Column::Num(v) => {
                assert!(v[7].is_nan() && v[8].is_nan() && v[9].is_nan());
                assert_eq!(v[10], 10.0);
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(f.column("b"), Some(Column::Cat(_))));
        // Infinities are missing values, not values that fail to parse.
        assert_eq!(
            f.coerced(),
            [Coerced {
                column: "a".into(),
                values: 1,
                examples: vec!["n/a".into()],
            }]
        );
    }

    #[test]
    fn split_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, "row,set\n0,train\n2,test\n").unwrap();
        assert_eq!(
            read_split(&p, 3).unwrap(),
            vec![Some(Set::Train), None, Some(Set::Test)]
        );
        std::fs::write(&p, "row,set\n0,train\n0,test\n").unwrap();
        assert!(read_split(&p, 3).unwrap_err().to_string().contains("twice"));
        std::fs::write(&p, "row,set\n5,train\n").unwrap();
        assert!(read_split(&p, 3).is_err());
    }
}
