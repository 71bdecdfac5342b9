/* ---- Camera frames to the model's input (edgecnn_preprocess) ------------------------ */
