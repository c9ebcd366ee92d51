#pragma once
/// \file piquant/piquant.hpp
/// Umbrella header: everything an application needs.
#include "piquant/batch.hpp"
#include "piquant/chat.hpp"
#include "piquant/error.hpp"
#include "piquant/grammar.hpp"
#include "piquant/lora.hpp"
#include "piquant/model.hpp"
#include "piquant/sampler.hpp"
#include "piquant/session.hpp"
#include "piquant/tokenizer.hpp"
#include "piquant/version.hpp"
