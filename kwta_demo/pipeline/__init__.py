"""The background job: what is left of training and evaluation, resumable."""
