"""sidrec.training"""
