/* nabla: tensors, expression graphs and reverse-mode autodiff in C. */
#ifndef NABLA_H
#define NABLA_H

#define NABLA_VERSION "0.1.0"

#include "tensor/dtype.h"
#include "tensor/fileio.h"
#include "tensor/half.h"
#include "tensor/rng.h"
#include "tensor/shape.h"
#include "tensor/status.h"
#include "tensor/tensor.h"

#include "kernels/backend.h"
#include "kernels/ops.h"
#include "kernels/threadpool.h"

#include "graph/graph.h"
#include "graph/nn.h"
#include "graph/session.h"

#include "autodiff/autodiff.h"

#include "models/classifier.h"
#include "models/dataset.h"
#include "models/idx.h"
#include "models/linear.h"
#include "models/mlp.h"
#include "models/optim.h"
#include "models/schedule.h"
#include "models/safetensors.h"
#include "models/checkpoint.h"
#include "models/csv.h"
#include "models/layers.h"
#include "models/rnn.h"
#include "models/attention.h"
#include "models/cnn.h"
#include "models/charlm.h"
#include "models/onnx.h"

#endif
