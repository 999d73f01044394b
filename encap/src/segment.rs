//! TCP/UDP segmentation of GSO super-frames. (Being written.)
