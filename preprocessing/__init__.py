"""Videos + gaze → Parquet segment shards: readers, ffmpeg decoding, fixation maps, Ray Data job."""
