"""sidrec.generation"""
