"""Long-form synthesis as background jobs: submit, watch, download.

``model`` (the job as callers see it), ``store`` (its rows and blobs),
``runner`` (one job, segment by segment, resumable), ``queue`` (who runs
jobs: in the server process, or Celery workers), ``subtitles`` (cues from
the audio actually produced), ``webhooks`` (signed callbacks, SSRF-safe).
"""
