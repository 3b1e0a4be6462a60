//! Rejected rows, with their reasons, into the batch's quarantine file — once: a row that
//! is already in quarantine (the same table, content and reason, from an earlier batch or
//! earlier in this one) is counted as a duplicate and not written again.

use super::*;

impl BatchWriter<'_> {
    /// The digest that tells a quarantined row: its table, reason and content.
    fn quarantine_key(&self, table: &str, reason: &str, row_json: &str) -> u128 {
        self.ids
            .digest(&format!("{table}\u{0}{reason}\u{0}{row_json}"))
    }

    /// Every row the committed batches quarantined, read from their quarantine files.
    fn load_quarantined(&mut self) -> Result<(), LedgerError> {
        if self.quarantined.is_some() {
            return Ok(());
        }
        let mut known = DigestMap::default();
        for b in self.manifest.batches.iter().filter(|b| b.rejected > 0) {
            let rel = format!("{}/quarantine.parquet", batch_dir(&b.id));
            let path = self.root.join(&rel);
            let f = File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|r| r.build())
                .map_err(|e| LedgerError::storage(&rel, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| LedgerError::storage(&rel, e))?;
                let (Some(t), Some(r), Some(j)) = (
                    column_str(&batch, "table"),
                    column_str(&batch, "reason"),
                    column_str(&batch, "row_json"),
                ) else {
                    continue;
                };
                for i in 0..batch.num_rows() {
                    known.insert(self.quarantine_key(t.value(i), r.value(i), j.value(i)), ());
                }
            }
        }
        self.quarantined = Some(known);
        Ok(())
    }

    /// Writes the rejected rows not yet in quarantine and counts them as rejected; the
    /// others count as duplicates (`already_quarantined`).
    pub(super) fn quarantine_rows(
        &mut self,
        file: &InputFile,
        batch: &RecordBatch,
        offset: u64,
        rows: &[(usize, &Rejection)],
        counts: &mut Counts,
    ) -> Result<(), LedgerError> {
        self.load_quarantined()?;
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| LedgerError::storage(&file.path, e))?;
        let schema = batch.schema();
        let mut source_rows = Vec::with_capacity(rows.len());
        let mut reasons = Vec::with_capacity(rows.len());
        let mut columns = Vec::with_capacity(rows.len());
        let mut details = Vec::with_capacity(rows.len());
        let mut raws = Vec::with_capacity(rows.len());
        for (row, rejection) in rows {
            let mut obj = serde_json::Map::new();
            for (field, fmt) in schema.fields().iter().zip(&formatters) {
                let value = if batch
                    .column(schema.index_of(field.name()).unwrap_or(0))
                    .is_null(*row)
                {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(fmt.value(*row).to_string())
                };
                obj.insert(field.name().clone(), value);
            }
            let raw = serde_json::Value::Object(obj).to_string();
            let key = self.quarantine_key(file.table.name(), rejection.reason.as_str(), &raw);
            let fresh = self
                .quarantined
                .as_mut()
                .is_some_and(|q| q.insert(key, ()).is_none());
            if !fresh {
                counts.duplicates += 1;
                counts.already_quarantined += 1;
                continue;
            }
            counts.rejected += 1;
            *counts
                .rejected_by_reason
                .entry(rejection.reason)
                .or_default() += 1;
            // Rows are numbered from 1, as a person counts data rows (header excluded).
            source_rows.push(offset + *row as u64 + 1);
            reasons.push(rejection.reason.as_str());
            columns.push(rejection.column);
            details.push(rejection.detail.clone());
            raws.push(raw);
        }
        let k = raws.len();
        if k == 0 {
            return Ok(());
        }
        let out = RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(StringArray::from(vec![self.id.as_str(); k])),
                Arc::new(StringArray::from(vec![file.path.display().to_string(); k])),
                Arc::new(UInt64Array::from(source_rows)),
                Arc::new(StringArray::from(vec![file.table.name(); k])),
                Arc::new(StringArray::from(reasons)),
                Arc::new(StringArray::from(columns)),
                Arc::new(StringArray::from(details)),
                Arc::new(StringArray::from(raws)),
            ],
        )
        .map_err(|e| LedgerError::storage(&file.path, e))?;
        if self.quarantine.is_none() {
            let path = self.root.join(&self.quarantine_rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| LedgerError::io(dir, e))?;
            }
            let f = File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
            let w = ArrowWriter::try_new(f, quarantine_schema(), Some(writer_properties()))
                .map_err(|e| LedgerError::storage(&path, e))?;
            self.quarantine = Some(w);
        }
        if let Some(w) = self.quarantine.as_mut() {
            w.write(&out)
                .map_err(|e| LedgerError::storage(&self.quarantine_rel, e))?;
        }
        Ok(())
    }

    pub(super) fn finish_quarantine(&mut self) -> Result<Option<String>, LedgerError> {
        let Some(w) = self.quarantine.take() else {
            return Ok(None);
        };
        let path = self.root.join(&self.quarantine_rel);
        let f = w.into_inner().map_err(|e| LedgerError::storage(&path, e))?;
        f.sync_all().map_err(|e| LedgerError::io(&path, e))?;
        Ok(Some(self.quarantine_rel.clone()))
    }
}

/// The quarantine file's schema.
pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("batch", DataType::Utf8, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::UInt64, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("row_json", DataType::Utf8, false),
    ]))
}

pub(super) fn column_str<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}
