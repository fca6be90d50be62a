"""Whole-slide images to training patches (Moghadam et al., WACV 2023, section 4: TCGA low-grade
glioma slides, up to 100 tumour patches of 512x512 per slide, scaled to 128x128).

`reader` opens slides through OpenSlide, `annotations` turns masks, QuPath GeoJSON or tissue
detection into a tumour mask, `sampling` picks and checks patches, `stain` normalises colour,
`splits` assigns patients to train/val/test and `extract` runs the whole pipeline. No Django here.
"""
