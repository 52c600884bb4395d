"""Distillation: a big teacher's predictions taught to a tiny student.

stages.py (the stages of `tinylm distill`, each resumable), targets.py (the teacher's top-k
predictions stored in shards), projection.py (those predictions moved onto the student's
tokenizer), synthetic.py (chat data the teacher writes, `tinylm synthesize`). The teacher
itself, the only code that needs PyTorch, is the top-level package `teacher`, imported when a
stage needs it. Imports core, text and training.
"""
