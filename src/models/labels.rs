//! Class names: the 80 COCO classes of the SSD (label L ↦ `COCO[L-1]`, with its COCO 2017
//! category id) and the 1000 ImageNet classes of ResNet-18 (logit index ↦ name). The lists live
//! in `models/` as data files and are compiled in.

/// One COCO class as the SSD numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CocoClass {
    /// SSD label, 1..=80 (0 is background).
    pub label: usize,
    /// COCO 2017 category id (1..=90 with gaps).
    pub coco_id: u32,
    pub name: &'static str,
}

const COCO_TSV: &str = include_str!("../../models/coco_classes.tsv");
const IMAGENET_TXT: &str = include_str!("../../models/imagenet_classes.txt");

/// The 80 COCO classes in SSD label order.
pub fn coco() -> &'static [CocoClass] {
    static COCO: std::sync::OnceLock<Vec<CocoClass>> = std::sync::OnceLock::new();
    COCO.get_or_init(|| {
        COCO_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut f = l.split('\t');
                let (label, id, name) = (f.next(), f.next(), f.next());
                CocoClass {
                    label: label.and_then(|v| v.parse().ok()).expect("models/coco_classes.tsv: label column"),
                    coco_id: id.and_then(|v| v.parse().ok()).expect("models/coco_classes.tsv: coco_id column"),
                    name: name.expect("models/coco_classes.tsv: name column"),
                }
            })
            .collect()
    })
}

/// The COCO class of SSD label `label` (1..=80); `None` for background or out of range.
pub fn coco_class(label: usize) -> Option<&'static CocoClass> {
    label.checked_sub(1).and_then(|i| coco().get(i))
}

/// SSD label of a COCO class name.
pub fn coco_label(name: &str) -> Option<usize> {
    coco().iter().find(|c| c.name == name).map(|c| c.label)
}

/// The 1000 ImageNet class names in logit order (torchvision `_IMAGENET_CATEGORIES`).
pub fn imagenet() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| IMAGENET_TXT.lines().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_labels_map_to_names_and_ids_with_the_gaps() {
        let c = coco();
        assert_eq!(c.len(), 80);
        assert!(c.iter().enumerate().all(|(i, k)| k.label == i + 1));
        assert_eq!(coco_class(1).map(|c| (c.name, c.coco_id)), Some(("person", 1)));
        assert_eq!(coco_class(12).map(|c| (c.name, c.coco_id)), Some(("stop sign", 13)));
        assert_eq!(coco_class(17).map(|c| (c.name, c.coco_id)), Some(("dog", 18)));
        assert_eq!(coco_class(80).map(|c| (c.name, c.coco_id)), Some(("toothbrush", 90)));
        assert!(coco_class(0).is_none() && coco_class(81).is_none());
        assert_eq!(coco_label("dog"), Some(17));
        let ids: std::collections::HashSet<u32> = c.iter().map(|k| k.coco_id).collect();
        assert_eq!(ids.len(), 80);
    }

    #[test]
    fn imagenet_has_1000_unique_names() {
        let n = imagenet();
        assert_eq!(n.len(), 1000);
        assert_eq!((n[0], n[1], n[999]), ("tench", "goldfish", "toilet tissue"));
        let set: std::collections::HashSet<_> = n.iter().collect();
        assert_eq!(set.len(), 1000);
    }
}
