"""Evaluation: per-layer reports (report.compare, QuantReport), mixed precision (sensitivity,
auto_mixed_precision) and weight-format comparisons (comparison.compare_formats).
"""
