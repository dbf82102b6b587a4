"""Metrics: ranking metrics (Recall/NDCG/MRR) and SID quality metrics."""
