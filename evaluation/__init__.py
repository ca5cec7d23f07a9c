"""Measuring the product: BEIR and QA-set readers, and the runners behind `kb eval` and `kb eval-qa`."""
