// Schedulers against the reference library (diffusers 0.42.1): timesteps,
// sigmas, initial noise scale, scaled model input and step results for a
// sweep of configurations (table below, printed by the script at the end of
// this file), the reference's golden file for the tiny model, and the
// refusal of settings this code does not support.
#include "model/scheduler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "model/json_file.h"
#include "model/safetensors.h"
#include "tests/support/data.h"

using namespace via::model;

namespace {

struct Expected {
  std::string config;
  SchedulerKind kind;
  int64_t steps;
  std::vector<double> timesteps;
  std::vector<double> sigmas;  // empty for DDIM
  double init_noise_sigma;
  std::vector<double> scaled_input_step1;
  std::vector<double> prev_sample_step1;
  std::vector<double> prev_sample_last_step;
};

const std::vector<float> kNoise = {1.5409960746765137, -0.293428897857666, -2.1787893772125244, 0.5684312582015991, -1.0845223665237427, -1.3985954523086548, 0.40334683656692505, 0.8380263447761536};
const std::vector<std::pair<std::string, std::string>> kConfigs = {
    {"ip2p", R"({"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null})"},
    {"linear_trailing", R"({"timestep_spacing": "trailing"})"},
    {"scaled_leading_offset", R"({"timestep_spacing": "leading", "steps_offset": 1, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012})"},
    {"cosine_linspace_clip", R"({"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace", "clip_sample": true})"},
    {"ip2p_vpred", R"({"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null})"},
    {"short_schedule", R"({"num_train_timesteps": 50, "timestep_spacing": "linspace", "set_alpha_to_one": true, "clip_sample": false})"},
};
const std::vector<Expected> kExpected = {
    {"ip2p", SchedulerKind::EulerAncestral, 10, {999.0, 888.0, 777.0, 666.0, 555.0, 444.0, 333.0, 222.0, 111.0, 0.0},
     {14.614646911621094, 7.839885234832764, 4.609176158905029, 2.9183084964752197, 1.950162410736084, 1.344928503036499, 0.9323583245277405, 0.6249772906303406, 0.36865851283073425, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.18979161977767944, -0.12652774155139923, -0.06326387077569962, 0.0, 0.06326387077569962, 0.12652774155139923, 0.18979161977767944, 0.25305548310279846},
     {-0.8845272064208984, -4.865839004516602, -6.48868465423584, 7.198127746582031, -0.19036197662353516, -5.669835090637207, -1.9218897819519043, 1.2569732666015625},
     {-1.5291675329208374, -1.0157592296600342, -0.4878620207309723, 0.02887563966214657, 0.5190651416778564, 0.991726279258728, 1.471994161605835, 1.9780105352401733}},
    {"ip2p", SchedulerKind::Euler, 10, {999.0, 888.0, 777.0, 666.0, 555.0, 444.0, 333.0, 222.0, 111.0, 0.0},
     {14.614646911621094, 7.839885234832764, 4.609176158905029, 2.9183084964752197, 1.950162410736084, 1.344928503036499, 0.9323583245277405, 0.6249772906303406, 0.36865851283073425, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.18979161977767944, -0.12652774155139923, -0.06326387077569962, 0.0, 0.06326387077569962, 0.12652774155139923, 0.18979161977767944, 0.25305548310279846},
     {-4.730709552764893, -2.7455596923828125, 0.8444494009017944, 3.198377847671509, 2.611732244491577, 0.08356994390487671, -1.6020307540893555, -0.4356389045715332},
     {-1.5291675329208374, -1.0157592296600342, -0.4878620207309723, 0.02887563966214657, 0.5190651416778564, 0.991726279258728, 1.471994161605835, 1.9780105352401733}},
    {"ip2p", SchedulerKind::Ddim, 10, {901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {-2.757078170776367, -1.7734339237213135, -0.5357689261436462, 0.5062465071678162, 1.082821249961853, 1.3520880937576294, 1.7547178268432617, 2.60876727104187},
     {-1.5127832889556885, -1.0069879293441772, -0.4951610267162323, 0.012020274996757507, 0.5081501603126526, 0.9969834089279175, 1.4889832735061646, 1.9917014837265015}},
    {"ip2p", SchedulerKind::EulerAncestral, 7, {999.0, 832.5, 666.0, 499.5, 333.0, 166.5, 0.0},
     {14.614646911621094, 5.948918342590332, 2.9183084964752197, 1.6155834197998047, 0.9323583245277405, 0.4935535192489624, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.24865801632404327, -0.16577200591564178, -0.08288600295782089, 0.0, 0.08288600295782089, 0.16577200591564178, 0.24865801632404327, 0.33154401183128357},
     {-2.0985043048858643, -4.1869120597839355, -4.160870552062988, 5.917642593383789, 0.6947336196899414, -3.8380651473999023, -1.8116616010665894, 0.7255196571350098},
     {-1.5291675329208374, -1.0157592296600342, -0.4878620207309723, 0.02887563966214657, 0.5190651416778564, 0.991726279258728, 1.471994161605835, 1.9780105352401733}},
    {"ip2p", SchedulerKind::Euler, 7, {999.0, 832.5, 666.0, 499.5, 333.0, 166.5, 0.0},
     {14.614646911621094, 5.948918342590332, 2.9183084964752197, 1.6155834197998047, 0.9323583245277405, 0.4935535192489624, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.24865801632404327, -0.16577200591564178, -0.08288600295782089, 0.0, 0.08288600295782089, 0.16577200591564178, 0.24865801632404327, 0.33154401183128357},
     {-4.530610084533691, -2.6374454498291016, 0.761178731918335, 3.0002810955047607, 2.4809389114379883, 0.14033055305480957, -1.4099013805389404, -0.28478360176086426},
     {-1.5291675329208374, -1.0157592296600342, -0.4878620207309723, 0.02887563966214657, 0.5190651416778564, 0.991726279258728, 1.471994161605835, 1.9780105352401733}},
    {"ip2p", SchedulerKind::Ddim, 7, {853.0, 711.0, 569.0, 427.0, 285.0, 143.0, 1.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {-3.0183465480804443, -1.932471752166748, -0.5330551862716675, 0.6248680353164673, 1.2082903385162354, 1.412398099899292, 1.7811172008514404, 2.707031011581421},
     {-1.5127832889556885, -1.0069879293441772, -0.4951610267162323, 0.012020274996757507, 0.5081501603126526, 0.9969834089279175, 1.4889832735061646, 1.9917014837265015}},
    {"linear_trailing", SchedulerKind::EulerAncestral, 16, {999.0, 937.0, 874.0, 811.0, 749.0, 687.0, 624.0, 561.0, 499.0, 437.0, 374.0, 311.0, 249.0, 187.0, 124.0, 61.0},
     {157.4072723388672, 85.77397155761719, 48.16684341430664, 28.15132713317871, 17.24698257446289, 10.96971321105957, 7.1861395835876465, 4.8725433349609375, 3.4241368770599365, 2.4638688564300537, 1.7922946214675903, 1.3105616569519043, 0.9529355764389038, 0.6685078144073486, 0.4263589680194855, 0.21181504428386688, 0.0}, 157.4072723388672,
     {-0.017486633732914925, -0.011657755821943283, -0.0058288779109716415, 0.0, 0.0058288779109716415, 0.011657755821943283, 0.017486633732914925, 0.023315511643886566},
     {1.1909828186035156, -44.424232482910156, -62.8974494934082, 80.7928237915039, -4.338153839111328, -71.39944458007812, -38.811153411865234, -8.873729705810547},
     {-1.7118149995803833, -1.1144441366195679, -0.4118538498878479, 0.20969530940055847, 0.6384515762329102, 0.9399160742759705, 1.2966214418411255, 1.840312123298645}},
    {"linear_trailing", SchedulerKind::Euler, 16, {999.0, 937.0, 874.0, 811.0, 749.0, 687.0, 624.0, 561.0, 499.0, 437.0, 374.0, 311.0, 249.0, 187.0, 124.0, 61.0},
     {157.4072723388672, 85.77397155761719, 48.16684341430664, 28.15132713317871, 17.24698257446289, 10.96971321105957, 7.1861395835876465, 4.8725433349609375, 3.4241368770599365, 2.4638688564300537, 1.7922946214675903, 1.3105616569519043, 0.9529355764389038, 0.6685078144073486, 0.4263589680194855, 0.21181504428386688, 0.0}, 157.4072723388672,
     {-0.017486633732914925, -0.011657755821943283, -0.0058288779109716415, 0.0, 0.0058288779109716415, 0.011657755821943283, 0.017486633732914925, 0.023315511643886566},
     {-39.10712814331055, -21.3192195892334, 15.150087356567383, 37.23077392578125, 25.0816593170166, -9.667720794677734, -34.609249114990234, -26.35209846496582},
     {-1.7118149995803833, -1.1144441366195679, -0.4118538498878479, 0.20969530940055847, 0.6384515762329102, 0.9399160742759705, 1.2966214418411255, 1.840312123298645}},
    {"linear_trailing", SchedulerKind::Ddim, 16, {999.0, 937.0, 874.0, 811.0, 749.0, 687.0, 624.0, 561.0, 499.0, 437.0, 374.0, 311.0, 249.0, 187.0, 124.0, 61.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {0.9792143702507019, 0.5196139812469482, -0.43663275241851807, -0.9692090153694153, -0.6329312920570374, 0.30417612195014954, 0.9805409908294678, 0.774316668510437},
     {-1.0, -1.0, -0.42294713854789734, 0.20969530940055847, 0.6495448350906372, 0.9621027708053589, 1.0, 1.0}},
    {"linear_trailing", SchedulerKind::EulerAncestral, 3, {999.0, 666.0, 332.0},
     {157.4072723388672, 9.488921165466309, 1.4551136493682861, 0.0}, 157.4072723388672,
     {-0.15720850229263306, -0.10480567067861557, -0.052402835339307785, 0.0, 0.052402835339307785, 0.10480567067861557, 0.15720850229263306, 0.20961134135723114},
     {-8.549978256225586, -6.428245544433594, 0.2230384349822998, 9.990402221679688, 4.9970808029174805, -3.6393961906433105, -6.81675386428833, -3.7804932594299316},
     {-2.955113649368286, -1.7862012386322021, 0.105540931224823, 1.4405516386032104, 1.4511257410049438, 0.5872392654418945, 0.10284316539764404, 0.9029865264892578}},
    {"linear_trailing", SchedulerKind::Euler, 3, {999.0, 666.0, 332.0},
     {157.4072723388672, 9.488921165466309, 1.4551136493682861, 0.0}, 157.4072723388672,
     {-0.15720850229263306, -0.10480567067861557, -0.052402835339307785, 0.0, 0.052402835339307785, 0.10480567067861557, 0.15720850229263306, 0.20961134135723114},
     {-9.533807754516602, -5.34068489074707, 2.8432438373565674, 7.953409194946289, 5.751246929168701, -1.2788875102996826, -6.213823318481445, -4.056705951690674},
     {-2.955113649368286, -1.7862012386322021, 0.105540931224823, 1.4405516386032104, 1.4511257410049438, 0.5872392654418945, 0.10284316539764404, 0.9029865264892578}},
    {"linear_trailing", SchedulerKind::Ddim, 3, {999.0, 666.0, 332.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {0.2609860301017761, -0.11847352981567383, -0.8074750900268555, -0.2527253031730652, 0.024915456771850586, 0.7986187934875488, 1.3570455312728882, 1.1867806911468506},
     {-1.0, -1.0, -0.27726078033447266, 1.0, 1.0, 1.0, 1.0, 1.0}},
    {"scaled_leading_offset", SchedulerKind::EulerAncestral, 7, {853.0, 711.0, 569.0, 427.0, 285.0, 143.0, 1.0},
     {6.570652008056641, 3.4854564666748047, 2.0473127365112305, 1.2720634937286377, 0.7900615334510803, 0.4403095841407776, 0.04131447896361351, 0.0}, 6.646312713623047,
     {-0.4136706292629242, -0.27578043937683105, -0.13789021968841553, 0.0, 0.13789021968841553, 0.27578043937683105, 0.4136706292629242, 0.5515608787536621},
     {-1.2296109199523926, -2.719634532928467, -3.1600234508514404, 3.2018802165985107, 0.19524943828582764, -1.9649062156677246, -0.023657798767089844, 1.6674511432647705},
     {-1.5413144826889038, -1.0223222970962524, -0.48280709981918335, 0.040901023894548416, 0.5270049571990967, 0.9882806539535522, 1.4603310823440552, 1.9688528776168823}},
    {"scaled_leading_offset", SchedulerKind::Euler, 7, {853.0, 711.0, 569.0, 427.0, 285.0, 143.0, 1.0},
     {6.570652008056641, 3.4854564666748047, 2.0473127365112305, 1.2720634937286377, 0.7900615334510803, 0.4403095841407776, 0.04131447896361351, 0.0}, 6.646312713623047,
     {-0.4136706292629242, -0.27578043937683105, -0.13789021968841553, 0.0, 0.13789021968841553, 0.27578043937683105, 0.4136706292629242, 0.5515608787536621},
     {-2.938143730163574, -1.7770323753356934, 0.09847897291183472, 1.4237514734268188, 1.4400334358215332, 0.5920529961585999, 0.11913716793060303, 0.9157801866531372},
     {-1.5413144826889038, -1.0223222970962524, -0.48280709981918335, 0.040901023894548416, 0.5270049571990967, 0.9882806539535522, 1.4603310823440552, 1.9688528776168823}},
    {"scaled_leading_offset", SchedulerKind::Ddim, 7, {853.0, 711.0, 569.0, 427.0, 285.0, 143.0, 1.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {0.4596533179283142, 0.04659584164619446, -0.5330551862716675, -0.45066118240356445, -0.14843767881393433, 0.6937706470489502, 1.3016412258148193, 1.1163008213043213},
     {-1.0, -1.0, -0.48323363065719604, 0.040901023894548416, 0.5274314880371094, 0.9891337156295776, 1.0, 1.0}},
    {"cosine_linspace_clip", SchedulerKind::EulerAncestral, 5, {999.0, 749.25, 499.5, 249.75, 0.0},
     {20291.302734375, 2.4381465911865234, 1.0139703750610352, 0.42637622356414795, 0.006427108775824308, 0.0}, 20291.302734375,
     {-0.5692053437232971, -0.37947019934654236, -0.18973509967327118, 0.0, 0.18973509967327118, 0.37947019934654236, 0.5692053437232971, 0.7589403986930847},
     {-2.0954670906066895, -2.3600759506225586, -1.6699743270874023, 2.52044415473938, 0.8179796934127808, -0.8616737723350525, -0.06420755386352539, 1.2525525093078613},
     {-1.5064270496368408, -1.0034725666046143, -0.4973253905773163, 0.006362789310514927, 0.5042010545730591, 0.9981768727302551, 1.4938288927078247, 1.995154619216919}},
    {"cosine_linspace_clip", SchedulerKind::Euler, 5, {999.0, 749.25, 499.5, 249.75, 0.0},
     {20291.302734375, 2.4381465911865234, 1.0139703750610352, 0.42637622356414795, 0.006427108775824308, 0.0}, 20291.302734375,
     {-0.5692053437232971, -0.37947019934654236, -0.18973509967327118, 0.0, 0.18973509967327118, 0.37947019934654236, 0.5692053437232971, 0.7589403986930847},
     {-2.9241762161254883, -1.7694857120513916, 0.09266644716262817, 1.409923791885376, 1.430903673171997, 0.5960150361061096, 0.13254833221435547, 0.9263103008270264},
     {-1.5064270496368408, -1.0034725666046143, -0.4973253905773163, 0.006362789310514927, 0.5042010545730591, 0.9981768727302551, 1.4938288927078247, 1.995154619216919}},
    {"cosine_linspace_clip", SchedulerKind::Ddim, 5, {999.0, 749.0, 500.0, 250.0, 0.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {0.11877304315567017, -0.2324337363243103, -0.5133548974990845, -0.11112737655639648, 0.1458415389060974, 0.8619385957717896, 1.3787875175476074, 1.2211997509002686},
     {-1.0, -1.0, -0.4973357021808624, 0.006362789776176214, 0.5042113661766052, 0.9981975555419922, 1.0, 1.0}},
    {"ip2p_vpred", SchedulerKind::EulerAncestral, 6, {999.0, 799.2000122070312, 599.4000244140625, 399.6000061035156, 199.8000030517578, 0.0},
     {14.614646911621094, 5.092418670654297, 2.2797348499298096, 1.1628665924072266, 0.5711901783943176, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.2890354096889496, -0.19269028306007385, -0.09634514153003693, 0.0, 0.09634514153003693, 0.19269028306007385, 0.2890354096889496, 0.3853805661201477},
     {2.0116190910339355, -1.2521873712539673, -4.230073928833008, 1.9355192184448242, -1.582934021949768, -2.843547821044922, 0.41403013467788696, 1.5770273208618164},
     {-1.527880072593689, -1.0149024724960327, -0.48744213581085205, 0.028863361105322838, 0.5186320543289185, 0.9908797144889832, 1.4707310199737549, 1.976319670677185}},
    {"ip2p_vpred", SchedulerKind::Euler, 6, {999.0, 799.2000122070312, 599.4000244140625, 399.6000061035156, 199.8000030517578, 0.0},
     {14.614646911621094, 5.092418670654297, 2.2797348499298096, 1.1628665924072266, 0.5711901783943176, 0.029167532920837402, 0.0}, 14.614646911621094,
     {-0.2890354096889496, -0.19269028306007385, -0.09634514153003693, 0.0, 0.09634514153003693, 0.19269028306007385, 0.2890354096889496, 0.3853805661201477},
     {-1.2442468404769897, -0.7610113024711609, -0.008548051118850708, 0.5365529656410217, 0.5883496999740601, 0.3144416809082031, 0.18187999725341797, 0.5277624130249023},
     {-1.527880072593689, -1.0149024724960327, -0.48744213581085205, 0.028863361105322838, 0.5186320543289185, 0.9908797144889832, 1.4707310199737549, 1.976319670677185}},
    {"ip2p_vpred", SchedulerKind::Ddim, 6, {831.0, 665.0, 499.0, 333.0, 167.0, 1.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {-1.6844613552093506, -1.0949422121047974, -0.3952261209487915, 0.21961507201194763, 0.6325432062149048, 0.9121579527854919, 1.249626874923706, 1.7829264402389526},
     {-1.5120210647583008, -1.0064811706542969, -0.4949147403240204, 0.012010030448436737, 0.507892906665802, 0.99648517370224, 1.48824143409729, 1.9907069206237793}},
    {"short_schedule", SchedulerKind::EulerAncestral, 4, {49.0, 32.66666793823242, 16.33333396911621, 0.0},
     {0.8114850521087646, 0.5057217478752136, 0.24730774760246277, 0.010001329705119133, 0.0}, 0.8114850521087646,
     {-1.3385632038116455, -0.8923754692077637, -0.44618773460388184, 0.0, 0.44618773460388184, 0.8923754692077637, 1.3385632038116455, 1.7847509384155273},
     {-1.5523600578308105, -1.2711979150772095, -0.8098816871643066, 0.5035545825958252, 0.517558217048645, 0.5891467332839966, 1.2175521850585938, 1.8906898498535156},
     {-1.510001301765442, -1.005403757095337, -0.4958379864692688, 0.009901241399347782, 0.5065373182296753, 0.9971629977226257, 1.4903969764709473, 1.992460012435913}},
    {"short_schedule", SchedulerKind::Euler, 4, {49.0, 32.66666793823242, 16.33333396911621, 0.0},
     {0.8114850521087646, 0.5057217478752136, 0.24730774760246277, 0.010001329705119133, 0.0}, 0.8114850521087646,
     {-1.3385632038116455, -0.8923754692077637, -0.44618773460388184, 0.0, 0.44618773460388184, 0.8923754692077637, 1.3385632038116455, 1.7847509384155273},
     {-1.7584140300750732, -1.1396217346191406, -0.3924618363380432, 0.2558279037475586, 0.6689106225967407, 0.9266977310180664, 1.2518784999847412, 1.8051810264587402},
     {-1.510001301765442, -1.005403757095337, -0.4958379864692688, 0.009901241399347782, 0.5065373182296753, 0.9971629977226257, 1.4903969764709473, 1.992460012435913}},
    {"short_schedule", SchedulerKind::Ddim, 4, {49.0, 33.0, 16.0, 0.0},
     {}, 1.0,
     {-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0},
     {-1.7898799180984497, -1.1699602603912354, -0.4584735631942749, 0.18248715996742249, 0.6556700468063354, 1.0180773735046387, 1.4285579919815063, 2.0017623901367188},
     {-1.5100762844085693, -1.0054538249969482, -0.4958629906177521, 0.009901241399347782, 0.5065622925758362, 0.9972130060195923, 1.4904719591140747, 1.9925600290298462}},
};

// Within `rel` of the reference, relative to the largest magnitude of `want`
// (steps combine terms of very different size; an element near zero cannot
// be held to its own relative error).
void expect_close(const at::Tensor& got, const std::vector<double>& want, double rel, const std::string& what) {
  const at::Tensor g = got.to(at::kDouble).contiguous().reshape({-1});
  ASSERT_EQ(g.numel(), static_cast<int64_t>(want.size())) << what;
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(g[static_cast<int64_t>(i)].item<double>(), want[i], rel * scale) << what << " [" << i << "]";
}

// Each element within `rel` of its own reference value.
void expect_each_close(const at::Tensor& got, const std::vector<double>& want, double rel, const std::string& what) {
  const at::Tensor g = got.to(at::kDouble).contiguous().reshape({-1});
  ASSERT_EQ(g.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(g[static_cast<int64_t>(i)].item<double>(), want[i], rel * std::abs(want[i]) + 1e-30)
        << what << " [" << i << "]";
}

SchedulerConfig config_named(const std::string& name) {
  for (const auto& [n, json] : kConfigs)
    if (n == name) return SchedulerConfig::from_json(nlohmann::json::parse(json), name);
  throw std::runtime_error("no config " + name);
}

at::Tensor fixed_sample() { return at::linspace(-1.5, 2.0, 8, at::kFloat).reshape({1, 2, 2, 2}); }
at::Tensor fixed_output() { return at::cos(at::arange(8, at::kFloat)).reshape({1, 2, 2, 2}); }
at::Tensor fixed_noise() { return at::tensor(kNoise, at::kFloat).reshape({1, 2, 2, 2}); }

class SchedulerSweep : public ::testing::TestWithParam<size_t> {};

TEST_P(SchedulerSweep, MatchesReference) {
  const Expected& e = kExpected[GetParam()];
  const std::string what = e.config + " " + scheduler_name(e.kind) + " n=" + std::to_string(e.steps);
  auto s = make_scheduler(e.kind, config_named(e.config));
  s->set_timesteps(e.steps);
  ASSERT_EQ(s->num_inference_steps(), e.steps) << what;
  EXPECT_EQ(s->timesteps().scalar_type(), e.kind == SchedulerKind::Ddim ? at::kLong : at::kFloat) << what;
  expect_each_close(s->timesteps(), e.timesteps, 0.0, what + " timesteps");
  for (int64_t i = 0; i < e.steps; ++i) EXPECT_EQ(s->timestep(i), e.timesteps[static_cast<size_t>(i)]) << what;
  if (!e.sigmas.empty()) {
    auto* sigma = dynamic_cast<SigmaScheduler*>(s.get());
    ASSERT_NE(sigma, nullptr) << what;
    expect_each_close(sigma->sigmas(), e.sigmas, 1e-6, what + " sigmas");
  }
  EXPECT_NEAR(s->init_noise_sigma(), e.init_noise_sigma, 1e-6 * e.init_noise_sigma) << what;
  EXPECT_EQ(s->needs_noise(), e.kind == SchedulerKind::EulerAncestral) << what;

  const at::Tensor sample = fixed_sample(), out = fixed_output(), noise = fixed_noise();
  expect_close(s->scale_model_input(sample, 1), e.scaled_input_step1, 1e-6, what + " scale_model_input");
  expect_close(s->step(out, 1, sample, noise), e.prev_sample_step1, 1e-6, what + " step 1");
  expect_close(s->step(out, e.steps - 1, sample, noise), e.prev_sample_last_step, 1e-6, what + " last step");
}

INSTANTIATE_TEST_SUITE_P(Diffusers, SchedulerSweep, ::testing::Range<size_t>(0, kExpected.size()));

using via::test::reference_data;

// Max |got - want| within `rel` of max |want|.
void expect_tensor_close(const at::Tensor& got, const at::Tensor& want, double rel, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = want.abs().max().item<double>();
  const double err = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(err, rel * scale) << what << ": max abs error " << err << " vs scale " << scale;
}

// The reference's whole trajectories for the tiny model's scheduler config
// (goldens/scheduler_<name>.safetensors, tests/reference/README.md): our own
// samples are fed back step after step, so errors would accumulate.
class SchedulerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SchedulerGolden, TrajectoryMatchesReference) {
  const std::string name = GetParam();
  const SafeTensorsFile golden(reference_data("goldens/scheduler_" + name + ".safetensors"));
  const SchedulerConfig config = SchedulerConfig::from_file(reference_data("tiny_ip2p/scheduler/scheduler_config.json"));
  for (int64_t n : {10, 20}) {
    const std::string p = "n" + std::to_string(n) + "_", what = name + " n=" + std::to_string(n);
    auto s = make_scheduler(scheduler_kind_from_name(name), config);
    s->set_timesteps(n);
    const at::Tensor ts = golden.tensor(p + "timesteps");
    EXPECT_EQ(s->timesteps().scalar_type(), ts.scalar_type()) << what;
    EXPECT_TRUE(at::equal(s->timesteps(), ts)) << what << ": " << s->timesteps() << " vs " << ts;
    if (golden.contains(p + "sigmas"))
      expect_tensor_close(dynamic_cast<SigmaScheduler&>(*s).sigmas(), golden.tensor(p + "sigmas"), 1e-6,
                          what + " sigmas");
    if (golden.contains(p + "alphas_cumprod"))
      expect_tensor_close(s->alphas_cumprod(), golden.tensor(p + "alphas_cumprod"), 1e-6, what + " alphas_cumprod");
    const double sigma0 = golden.tensor(p + "init_noise_sigma").item<double>();
    EXPECT_NEAR(s->init_noise_sigma(), sigma0, 1e-6 * sigma0) << what;

    const at::Tensor outputs = golden.tensor(p + "model_outputs"), scaled = golden.tensor(p + "scaled_samples");
    const at::Tensor prevs = golden.tensor(p + "prev_samples");
    const bool noisy = golden.contains(p + "step_noises");
    EXPECT_EQ(s->needs_noise(), noisy) << what;
    at::Tensor cur = golden.tensor(p + "sample");
    for (int64_t i = 0; i < n; ++i) {
      const std::string at_step = what + " step " + std::to_string(i);
      expect_tensor_close(s->scale_model_input(cur, i), scaled[i], 1e-6, at_step + " scale_model_input");
      cur = s->step(outputs[i], i, cur, noisy ? golden.tensor(p + "step_noises")[i] : at::Tensor());
      expect_tensor_close(cur, prevs[i], 1e-6, at_step + " prev_sample");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModel, SchedulerGolden, ::testing::Values("euler_a", "euler", "ddim"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(Scheduler, StepsArePureFunctionsOfTheirArguments) {
  auto s = make_scheduler(SchedulerKind::EulerAncestral, config_named("ip2p"));
  s->set_timesteps(10);
  const at::Tensor sample = fixed_sample(), out = fixed_output(), noise = fixed_noise();
  const at::Tensor later = s->step(out, 5, sample, noise);
  const at::Tensor first = s->step(out, 1, sample, noise);
  EXPECT_TRUE(at::equal(s->step(out, 5, sample, noise), later));
  EXPECT_TRUE(at::equal(s->step(out, 1, sample, noise), first));
  // The noise matters for ancestral steps and nothing else does.
  EXPECT_FALSE(at::equal(s->step(out, 1, sample, noise * 2), first));
}

TEST(Scheduler, AncestralStepRefusesMissingNoise) {
  auto s = make_scheduler(SchedulerKind::EulerAncestral, config_named("ip2p"));
  s->set_timesteps(4);
  EXPECT_THROW(s->step(fixed_output(), 0, fixed_sample(), at::Tensor()), c10::Error);
  // The last step adds no noise (sigma_to = 0), so none is needed.
  EXPECT_NO_THROW(s->step(fixed_output(), 3, fixed_sample(), at::Tensor()));
}

TEST(Scheduler, DeterministicSchedulersIgnoreNoise) {
  for (auto kind : {SchedulerKind::Euler, SchedulerKind::Ddim}) {
    auto s = make_scheduler(kind, config_named("ip2p"));
    s->set_timesteps(10);
    EXPECT_TRUE(at::equal(s->step(fixed_output(), 2, fixed_sample(), at::Tensor()),
                          s->step(fixed_output(), 2, fixed_sample(), fixed_noise())));
  }
}

TEST(Scheduler, AddNoiseMatchesTheSampleLevelOfEachStep) {
  const at::Tensor x0 = fixed_sample(), noise = fixed_noise();
  auto euler = make_scheduler(SchedulerKind::Euler, config_named("ip2p"));
  euler->set_timesteps(10);
  auto* sigma = dynamic_cast<SigmaScheduler*>(euler.get());
  const float s3 = sigma->sigmas()[3].item<float>();
  EXPECT_TRUE(at::allclose(euler->add_noise(x0, noise, 3), x0 + s3 * noise));
  EXPECT_TRUE(at::equal(euler->add_noise(x0, noise, 10), x0));  // after the last step: sigma 0

  // DDIM: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise at t = timesteps[i].
  auto ddim = make_scheduler(SchedulerKind::Ddim, config_named("ip2p"));
  ddim->set_timesteps(10);
  const float abar = ddim->alphas_cumprod()[ddim->timesteps()[2].item<int64_t>()].item<float>();
  EXPECT_TRUE(at::allclose(ddim->add_noise(x0, noise, 2), std::sqrt(abar) * x0 + std::sqrt(1 - abar) * noise));
  EXPECT_THROW(ddim->add_noise(x0, noise, 11), c10::Error);
}

TEST(Scheduler, SchedulerNames) {
  EXPECT_EQ(scheduler_kind_from_name("euler_a"), SchedulerKind::EulerAncestral);
  EXPECT_EQ(scheduler_kind_from_name("euler"), SchedulerKind::Euler);
  EXPECT_EQ(scheduler_kind_from_name("ddim"), SchedulerKind::Ddim);
  for (auto kind : {SchedulerKind::EulerAncestral, SchedulerKind::Euler, SchedulerKind::Ddim})
    EXPECT_EQ(scheduler_kind_from_name(scheduler_name(kind)), kind);
  EXPECT_EQ(scheduler_kind_from_class("EulerAncestralDiscreteScheduler"), SchedulerKind::EulerAncestral);
  EXPECT_EQ(scheduler_kind_from_class("DDIMScheduler"), SchedulerKind::Ddim);
  EXPECT_FALSE(scheduler_kind_from_class("PNDMScheduler").has_value());
  try {
    scheduler_kind_from_name("dpm++");
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("'dpm++'"), std::string::npos) << e.what();
  }
}

// make_scheduler(kind, config with `json`) throws ModelError naming the source and `needle`.
void expect_refused(SchedulerKind kind, const std::string& json, const std::string& needle) {
  try {
    make_scheduler(kind, SchedulerConfig::from_json(nlohmann::json::parse(json), "my/scheduler_config.json"));
    FAIL() << "expected ModelError for " << json;
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("my/scheduler_config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(Scheduler, RefusesUnsupportedSettings) {
  const auto ea = SchedulerKind::EulerAncestral;
  expect_refused(ea, R"({"beta_schedule": "sigmoid"})", "'beta_schedule' = 'sigmoid'");
  expect_refused(ea, R"({"prediction_type": "sample"})", "'prediction_type' = 'sample'");
  expect_refused(ea, R"({"timestep_spacing": "karras"})", "'timestep_spacing' = 'karras'");
  expect_refused(ea, R"({"rescale_betas_zero_snr": true})", "rescale_betas_zero_snr");
  expect_refused(ea, R"({"num_train_timesteps": 0})", "num_train_timesteps");
  expect_refused(ea, R"({"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]})", "trained_betas");
  expect_refused(ea, R"({"beta_start": "small"})", "beta_start");  // wrong JSON type
  expect_refused(SchedulerKind::Euler, R"({"use_karras_sigmas": true})", "use_karras_sigmas");
  expect_refused(SchedulerKind::Euler, R"({"interpolation_type": "log_linear"})", "interpolation_type");
  expect_refused(SchedulerKind::Euler, R"({"final_sigmas_type": "sigma_min"})", "final_sigmas_type");
  expect_refused(SchedulerKind::Ddim, R"({"thresholding": true})", "thresholding");
}

TEST(Scheduler, RefusesStepCountsOutsideTheSchedule) {
  for (auto kind : {SchedulerKind::EulerAncestral, SchedulerKind::Euler, SchedulerKind::Ddim}) {
    auto s = make_scheduler(kind, config_named("short_schedule"));
    EXPECT_THROW(s->set_timesteps(0), ModelError);
    EXPECT_THROW(s->set_timesteps(51), ModelError);
    EXPECT_NO_THROW(s->set_timesteps(50));
    EXPECT_THROW(s->step(fixed_output(), 50, fixed_sample(), fixed_noise()), c10::Error);
  }
}

TEST(Scheduler, TrainedBetasReplaceTheSchedule) {
  // Betas given explicitly equal to the linear schedule give the linear schedule's sigmas.
  std::vector<double> betas;
  for (int i = 0; i < 20; ++i) betas.push_back(at::linspace(0.0001, 0.02, 20, at::kFloat)[i].item<float>());
  nlohmann::json j = {{"num_train_timesteps", 20}, {"trained_betas", betas}};
  auto given = make_scheduler(SchedulerKind::Euler, SchedulerConfig::from_json(j, "given"));
  auto linear = make_scheduler(SchedulerKind::Euler,
                               SchedulerConfig::from_json(nlohmann::json{{"num_train_timesteps", 20}}, "linear"));
  given->set_timesteps(5);
  linear->set_timesteps(5);
  EXPECT_TRUE(at::equal(dynamic_cast<SigmaScheduler&>(*given).sigmas(), dynamic_cast<SigmaScheduler&>(*linear).sigmas()));
}

// ---- DPM-Solver++ (goldens/scheduler_dpmpp{,_karras}.safetensors, make_model_forms.py) ----

class DpmSolverGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(DpmSolverGolden, TrajectoryMatchesReference) {
  const std::string name = GetParam();
  const bool karras = name == "dpmpp_karras";
  const SafeTensorsFile golden(reference_data("goldens/scheduler_" + name + ".safetensors"));
  const SchedulerConfig config = SchedulerConfig::from_file(reference_data("tiny_ip2p/scheduler/scheduler_config.json"));
  for (int64_t n : {5, 10, 20}) {
    const std::string p = "n" + std::to_string(n) + "_", what = name + " n=" + std::to_string(n);
    auto s = make_scheduler(karras ? SchedulerKind::DpmSolverKarras : SchedulerKind::DpmSolver, config);
    s->set_timesteps(n);
    const at::Tensor ts = golden.tensor(p + "timesteps");
    EXPECT_EQ(s->timesteps().scalar_type(), at::kLong) << what;
    EXPECT_TRUE(at::equal(s->timesteps(), ts)) << what << ": " << s->timesteps() << " vs " << ts;
    expect_tensor_close(dynamic_cast<DpmSolverScheduler&>(*s).sigmas(), golden.tensor(p + "sigmas"), 1e-6,
                        what + " sigmas");
    EXPECT_EQ(s->init_noise_sigma(), golden.tensor(p + "init_noise_sigma").item<double>()) << what;
    const at::Tensor outputs = golden.tensor(p + "model_outputs"), prevs = golden.tensor(p + "prev_samples");
    at::Tensor cur = golden.tensor(p + "sample");
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const std::string at_step = what + " step " + std::to_string(i);
      expect_tensor_close(s->scale_model_input(cur, i), golden.tensor(p + "scaled_samples")[i], 1e-6,
                          at_step + " scale_model_input");
      cur = s->step(outputs[i], i, cur, at::Tensor());
      expect_tensor_close(cur, prevs[i], 1e-6, at_step + " prev_sample");
      worst = std::max(worst, (cur.to(at::kDouble) - prevs[i].to(at::kDouble)).abs().max().item<double>() /
                                  prevs[i].abs().max().item<double>());
    }
    std::cout << what << ": worst step error " << worst << " of scale\n";
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModel, DpmSolverGolden, ::testing::Values("dpmpp", "dpmpp_karras"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The settings beyond the defaults (goldens/scheduler_dpmpp_variants.safetensors).
TEST(DpmSolver, VariantsMatchTheReference) {
  const SafeTensorsFile golden(reference_data("goldens/scheduler_dpmpp_variants.safetensors"));
  const nlohmann::json base = read_json_file(reference_data("tiny_ip2p/scheduler/scheduler_config.json"));
  ASSERT_EQ(golden.metadata().size(), 7u);
  for (const auto& [name, overrides] : golden.metadata()) {
    nlohmann::json j = base;
    j.update(nlohmann::json::parse(overrides));
    const SchedulerConfig config = SchedulerConfig::from_json(j, name);
    for (int64_t n : {7, 16}) {
      const std::string p = name + "_n" + std::to_string(n) + "_", what = name + " n=" + std::to_string(n);
      auto s = make_scheduler(SchedulerKind::DpmSolver, config);
      s->set_timesteps(n);
      EXPECT_TRUE(at::equal(s->timesteps(), golden.tensor(p + "timesteps"))) << what << ": " << s->timesteps();
      expect_tensor_close(dynamic_cast<DpmSolverScheduler&>(*s).sigmas(), golden.tensor(p + "sigmas"), 1e-6,
                          what + " sigmas");
      const at::Tensor outputs = golden.tensor(p + "model_outputs"), prevs = golden.tensor(p + "prev_samples");
      at::Tensor cur = golden.tensor(p + "sample");
      for (int64_t i = 0; i < n; ++i) {
        cur = s->step(outputs[i], i, cur, at::Tensor());
        expect_tensor_close(cur, prevs[i], 2e-6, what + " step " + std::to_string(i));
      }
    }
  }
}

TEST(DpmSolver, KarrasFromTheConfigEqualsTheKarrasKind) {
  SchedulerConfig config = SchedulerConfig::from_file(reference_data("tiny_ip2p/scheduler/scheduler_config.json"));
  auto forced = make_scheduler(SchedulerKind::DpmSolverKarras, config);
  config.use_karras_sigmas = true;
  auto configured = make_scheduler(SchedulerKind::DpmSolver, config);
  forced->set_timesteps(12);
  configured->set_timesteps(12);
  EXPECT_TRUE(at::equal(forced->timesteps(), configured->timesteps()));
  EXPECT_TRUE(dynamic_cast<DpmSolverScheduler&>(*configured).karras());
}

TEST(DpmSolver, SecondOrderStepsNeedThePreviousStep) {
  auto s = make_scheduler(SchedulerKind::DpmSolver, config_named("ip2p"));
  s->set_timesteps(10);
  const at::Tensor x = fixed_sample(), out = fixed_output();
  EXPECT_THROW(s->step(out, 3, x, at::Tensor()), c10::Error);  // step 2 never ran
  const at::Tensor x1 = s->step(out, 0, x, at::Tensor());
  const at::Tensor x2 = s->step(out * 0.5, 1, x1, at::Tensor());
  // Repeating a step gives the same result (the history keeps step 0 for it).
  EXPECT_TRUE(at::equal(s->step(out * 0.5, 1, x1, at::Tensor()), x2));
  // The second-order step uses step 0's prediction: another history, another result.
  auto other = make_scheduler(SchedulerKind::DpmSolver, config_named("ip2p"));
  other->set_timesteps(10);
  other->step(out * 3, 0, x, at::Tensor());
  EXPECT_FALSE(at::equal(other->step(out * 0.5, 1, x1, at::Tensor()), x2));
  // add_noise at the start of a step: alpha x0 + sigma noise; after the last step: x0.
  EXPECT_TRUE(at::allclose(s->add_noise(x, fixed_noise(), 10), x));
}

TEST(DpmSolver, RefusesUnsupportedSettings) {
  const auto d = SchedulerKind::DpmSolver;
  expect_refused(d, R"({"solver_order": 3})", "'solver_order' = 3");
  expect_refused(d, R"({"algorithm_type": "sde-dpmsolver++"})", "'algorithm_type' = 'sde-dpmsolver++'");
  expect_refused(d, R"({"use_lu_lambdas": true})", "use_lu_lambdas");
  expect_refused(d, R"({"variance_type": "learned_range"})", "variance_type");
  expect_refused(d, R"({"final_sigmas_type": "max"})", "final_sigmas_type");
  expect_refused(d, R"({"thresholding": true})", "thresholding");
  expect_refused(d, R"({"solver_type": "rk4"})", "solver_type");
}

TEST(DpmSolver, NamesAndClasses) {
  EXPECT_EQ(scheduler_kind_from_name("dpmpp_2m"), SchedulerKind::DpmSolver);
  EXPECT_EQ(scheduler_kind_from_name("dpmpp_2m_karras"), SchedulerKind::DpmSolverKarras);
  EXPECT_EQ(scheduler_name(SchedulerKind::DpmSolverKarras), "dpmpp_2m_karras");
  EXPECT_EQ(scheduler_kind_from_class("DPMSolverMultistepScheduler"), SchedulerKind::DpmSolver);
  EXPECT_NE(supported_scheduler_classes().find("DPMSolverMultistepScheduler"), std::string::npos);
  try {
    scheduler_kind_from_name("pndm");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("dpmpp_2m_karras"), std::string::npos) << e.what();
  }
}

// diffusers saves a DPMSolverMultistepScheduler config with
// "lambda_min_clipped": -Infinity (Python's json; not strict JSON).
TEST(DpmSolver, ReadsTheConfigDiffusersWrites) {
  const SchedulerConfig c =
      SchedulerConfig::from_file(reference_data("model_forms/scheduler_dpmpp/scheduler_config.json"));
  EXPECT_EQ(c.class_name, "DPMSolverMultistepScheduler");
  EXPECT_TRUE(std::isinf(c.lambda_min_clipped) && c.lambda_min_clipped < 0);
  EXPECT_EQ(c.timestep_spacing, "linspace");
  auto s = make_scheduler(*scheduler_kind_from_class(c.class_name), c);
  s->set_timesteps(10);
  const SafeTensorsFile golden(reference_data("goldens/scheduler_dpmpp.safetensors"));
  EXPECT_TRUE(at::equal(s->timesteps(), golden.tensor("n10_timesteps")));
}

TEST(Json, AcceptsPythonsNonFiniteLiteralsOutsideStrings) {
  const nlohmann::json j = parse_json_text(
      R"({"a": -Infinity, "b": [Infinity, NaN, 1.5], "c": "NaN and -Infinity stay text", "d\"NaN": null})", "t");
  EXPECT_TRUE(std::isinf(j["a"].get<double>()) && j["a"].get<double>() < 0);
  EXPECT_TRUE(std::isinf(j["b"][0].get<double>()) && j["b"][0].get<double>() > 0);
  EXPECT_TRUE(std::isnan(j["b"][1].get<double>()));
  EXPECT_EQ(j["b"][2].get<double>(), 1.5);
  EXPECT_EQ(j["c"].get<std::string>(), "NaN and -Infinity stay text");
  EXPECT_TRUE(j.contains("d\"NaN"));
  try {
    parse_json_text(R"({"a": Infinit})", "my.json");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("my.json: not valid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace

/* The table above was printed by this script with diffusers 0.42.1 and torch 2.x:

# Prints the expected-value table of tests/model/test_scheduler.cpp (diffusers 0.42.1).
import torch, numpy as np, json
from diffusers import EulerAncestralDiscreteScheduler as EA, EulerDiscreteScheduler as EU, DDIMScheduler as DD
ip2p = dict(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False, num_train_timesteps=1000,
            prediction_type="epsilon", set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None)
configs = [
 ("ip2p", ip2p),
 ("linear_trailing", dict(timestep_spacing="trailing")),
 ("scaled_leading_offset", dict(timestep_spacing="leading", steps_offset=1, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
 ("cosine_linspace_clip", dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="linspace", clip_sample=True)),
 ("ip2p_vpred", dict(ip2p, prediction_type="v_prediction")),
 ("short_schedule", dict(num_train_timesteps=50, timestep_spacing="linspace", set_alpha_to_one=True, clip_sample=False)),
]
cases = [("ip2p",10),("ip2p",7),("linear_trailing",16),("linear_trailing",3),("scaled_leading_offset",7),
         ("cosine_linspace_clip",5),("ip2p_vpred",6),("short_schedule",4)]
sample = torch.linspace(-1.5, 2.0, 8).reshape(1,2,2,2)
out = torch.cos(torch.arange(8, dtype=torch.float32)).reshape(1,2,2,2)
noise = torch.randn((1,2,2,2), generator=torch.Generator().manual_seed(0))
def fmt(t):
    a = np.asarray(t, dtype=np.float64).reshape(-1)
    return "{" + ", ".join(repr(float(x)) for x in a) + "}"
print("const std::vector<float> kNoise = " + fmt(noise) + ";")
print("const std::vector<std::pair<std::string, std::string>> kConfigs = {")
for name, cfg in configs:
    print(f'    {{"{name}", R"({json.dumps(cfg)})"}},')
print("};")
print("const std::vector<Expected> kExpected = {")
for name, n in cases:
    cfg = dict(configs)[name]
    for cls, kind in ((EA,"EulerAncestral"),(EU,"Euler"),(DD,"Ddim")):
        s = cls.from_config(cfg)
        s.set_timesteps(n)
        ts = s.timesteps
        res = {}
        for i in (1, n - 1):
            t = ts[i]
            if cls is not DD:
                s._step_index = None
            scaled = s.scale_model_input(sample.clone(), t)
            kw = dict(generator=torch.Generator().manual_seed(0)) if cls is EA else {}
            prev = s.step(out, t, sample, **kw).prev_sample
            res[i] = (scaled, prev)
        sig = s.sigmas if cls is not DD else []
        ins = float(s.init_noise_sigma)
        print(f'    {{"{name}", SchedulerKind::{kind}, {n}, {fmt(ts)},\n     {fmt(sig)}, {ins!r},\n     {fmt(res[1][0])},\n     {fmt(res[1][1])},\n     {fmt(res[n-1][1])}}},')
print("};")
*/
