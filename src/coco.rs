//! COCO-format annotation files (the subset boxwalk reads and writes): images, annotations with
//! `[x, y, w, h]` boxes in pixels, categories.

use crate::error::FileError;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dataset {
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u32,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f32; 4],
    pub area: f32,
    #[serde(default)]
    pub iscrowd: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Category {
    pub id: u32,
    pub name: String,
}

impl Dataset {
    pub fn read(path: &Path) -> Result<Dataset, FileError> {
        FileError::read_json(path, "not a COCO annotation file")
    }

    /// Categories sorted by id; SSD label L (1-based) is entry L-1, as NVIDIA's COCODetection does.
    pub fn sorted_categories(&self) -> Vec<Category> {
        let mut c = self.categories.clone();
        c.sort_by_key(|c| c.id);
        c
    }
}
