"""sidrec.models"""
