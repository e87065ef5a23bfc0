//! Interning of grouping keys: each distinct key gets a dense id.
//!
//! Keys are encoded with Arrow's row format (one conversion per batch), hashed with the
//! stable column hash of `fungi-common`, and looked up in a hash table of ids. The table
//! stores the encoded rows contiguously, so interning allocates nothing per row, and the
//! key columns of any set of ids can be rebuilt as Arrow arrays for output.

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use fungi_common::Result;
use fungi_common::keys::hash_columns;
use hashbrown::HashTable;

/// Dense ids for the distinct keys seen by an operator.
#[derive(Debug)]
pub struct KeyTable {
    converter: RowConverter,
    fields: Vec<Field>,
    rows: Rows,
    hashes: Vec<u64>,
    table: HashTable<u32>,
    scratch_hashes: Vec<u64>,
    global_key: bool,
}

impl KeyTable {
    /// A table for keys made of the given fields (in order).
    pub fn new(fields: Vec<Field>) -> Result<Self> {
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.empty_rows(0, 0);
        Ok(KeyTable {
            converter,
            fields,
            rows,
            hashes: Vec::new(),
            table: HashTable::new(),
            scratch_hashes: Vec::new(),
            global_key: false,
        })
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        if self.fields.is_empty() {
            self.global_key as usize
        } else {
            self.rows.num_rows()
        }
    }

    /// Whether no key has been interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields that make up a key.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Interns the keys of the `num_rows` rows of `columns`, writing their ids into `ids`.
    pub fn intern(
        &mut self,
        columns: &[ArrayRef],
        num_rows: usize,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        ids.clear();
        if self.fields.is_empty() {
            // A global (non-keyed) aggregation: every row has the one empty key.
            self.global_key = true;
            ids.resize(num_rows, 0);
            return Ok(());
        }
        let batch_rows = self.converter.convert_columns(columns)?;
        hash_columns(columns, &mut self.scratch_hashes)?;
        ids.reserve(num_rows);
        for (i, &hash) in self.scratch_hashes.iter().enumerate() {
            let row = batch_rows.row(i);
            let rows = &self.rows;
            let found = self
                .table
                .find(hash, |&id| rows.row(id as usize) == row)
                .copied();
            let id = match found {
                Some(id) => id,
                None => {
                    let id = self.rows.num_rows() as u32;
                    self.rows.push(row);
                    self.hashes.push(hash);
                    let hashes = &self.hashes;
                    self.table
                        .insert_unique(hash, id, |&id| hashes[id as usize]);
                    id
                }
            };
            ids.push(id);
        }
        Ok(())
    }

    /// The key columns for the given ids, in that order.
    pub fn columns(&self, ids: &[u32]) -> Result<Vec<ArrayRef>> {
        if self.fields.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .converter
            .convert_rows(ids.iter().map(|&id| self.rows.row(id as usize)))?)
    }

    /// Drops every key (ids restart at 0).
    pub fn clear(&mut self) {
        self.rows = self.converter.empty_rows(0, 0);
        self.hashes.clear();
        self.table.clear();
        self.global_key = false;
    }

    /// The schema fields of the key, for building an output schema.
    pub fn key_fields_of(schema: &SchemaRef, names: &[String]) -> Result<Vec<Field>> {
        names
            .iter()
            .map(|n| {
                schema
                    .field_with_name(n)
                    .cloned()
                    .map_err(|_| crate::unknown_column(n, schema))
            })
            .collect()
    }
}
